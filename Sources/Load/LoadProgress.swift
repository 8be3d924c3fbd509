#if canImport(Glibc)
import Glibc
#endif
import Kernel

/// `muxlab load` on a terminal: once a second, one line on stderr, rewritten in place: the phase, answers
/// per second over the last second, the window's requests and errors, and its p99 so far.
/// The line is built in a buffer allocated once (digits written by hand, no String), so a load watched
/// on a terminal stays allocation-free like one whose output goes to a pipe.
struct LoadProgress {
    let buffer: UnsafeMutablePointer<UInt8>
    let capacity = 256
    var length = 0
    var lastAt: UInt64 = 0
    var lastCompleted: UInt64 = 0

    init(start: UInt64) {
        buffer = .allocate(capacity: capacity)
        lastAt = start
    }

    func free() { buffer.deallocate() }

    mutating func text(_ s: StaticString) {
        let n = min(s.utf8CodeUnitCount, capacity - length)
        (buffer + length).update(from: s.utf8Start, count: n)
        length += n
    }

    mutating func number(_ value: UInt64) {
        // Digits least significant first, then turned round in place.
        let first = length
        var v = value
        repeat {
            guard length < capacity else { break }
            buffer[length] = UInt8(48 + v % 10)
            length += 1
            v /= 10
        } while v > 0
        var (a, b) = (first, length - 1)
        while a < b {
            (buffer[a], buffer[b]) = (buffer[b], buffer[a])
            a += 1
            b -= 1
        }
    }

    /// Writes the line for `now`: `completed` answers so far (any phase), the window's requests, errors and p99 (µs).
    mutating func show(now: UInt64, elapsed: UInt64, measuring: Bool, completed: UInt64, requests: Int, errors: Int, p99Us: UInt64) {
        let dt = now > lastAt ? now - lastAt : 1
        let rate = (completed &- lastCompleted) &* 1_000_000_000 / dt
        (lastAt, lastCompleted) = (now, completed)
        length = 0
        text("\r\u{1b}[K")
        number(elapsed / 1_000_000_000)
        text(measuring ? " s  measuring  " : " s  warm-up  ")
        number(rate)
        text(" req/s")
        if measuring {
            text("  requests ")
            number(UInt64(requests))
            text("  errors ")
            number(UInt64(errors))
            text("  p99 ")
            number(p99Us)
            text(" us")
        }
        _ = write(2, buffer, length)
    }

    /// Clears the line before the summary is printed.
    func clear() {
        let erase: StaticString = "\r\u{1b}[K"
        _ = write(2, erase.utf8Start, erase.utf8CodeUnitCount)
    }
}
