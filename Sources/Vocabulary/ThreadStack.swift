#if canImport(Glibc)
import Glibc
#endif

/// Claim T1: the stack sizes `--thread-stack` takes.
public enum ThreadStack {
    /// What `--thread-stack BYTES` allows: glibc's PTHREAD_STACK_MIN (16 KiB) up to 1 GiB.
    public static let allowedBytes = 16_384...(1 << 30)

    /// glibc's default for a new thread: RLIMIT_STACK's soft limit (8 MiB on most systems), 2 MiB on
    /// x86-64 when that is unlimited (nptl's ARCH_STACK_DEFAULT_SIZE).
    public static var glibcDefaultBytes: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_STACK.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return 2 << 20 }
        return max(allowedBytes.lowerBound, Int(limit.rlim_cur))
    }

    /// "default" (0: glibc's default), or bytes with an optional K or M suffix (KiB, MiB); nil when neither
    /// or out of `allowedBytes`.
    public static func parse(_ text: String) -> Int? {
        let lower = text.lowercased()
        if lower == "default" { return 0 }
        var digits = Substring(lower)
        var scale = 1
        if let last = digits.last, last == "k" || last == "m" {
            scale = last == "k" ? 1 << 10 : 1 << 20
            digits = digits.dropLast()
        }
        guard let n = Int(digits), n <= Int.max / scale, allowedBytes.contains(n * scale) else { return nil }
        return n * scale
    }

    /// For messages: what `--thread-stack` allows.
    public static var allowedText: String {
        "default (glibc's: RLIMIT_STACK, \(glibcDefaultBytes >> 10) KiB here) or \(allowedBytes.lowerBound)-\(allowedBytes.upperBound) bytes, with an optional K or M suffix (256K, 8M)"
    }
}
