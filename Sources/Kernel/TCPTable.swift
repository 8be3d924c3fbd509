#if canImport(Glibc)
import Glibc
#endif

/// The kernel's TCP socket tables (tcp and tcp6 under /proc/net) of one network namespace.
public enum TCPTable {
    /// TIME_WAIT sockets (state 06) whose local port is `port` (that side closed first: the server)
    /// and whose remote port is `port` (the clients closed first), claim H2. nil when unreadable.
    /// `procNet` picks the namespace: /proc/net is the reading process's, /proc/PID/net that of
    /// process PID, /proc/thread-self/net the calling thread's.
    public static func timeWait(port: UInt16, procNet: String = "/proc/net") -> (local: Int, remote: Int)? {
        var local = 0, remote = 0, readAny = false
        for path in [procNet + "/tcp", procNet + "/tcp6"] {
            guard let text = readText(path) else { continue }
            readAny = true
            for line in text.split(separator: "\n").dropFirst() {
                // "  sl  local_address rem_address   st ...": addresses are HEXIP:HEXPORT.
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count > 3, fields[3] == "06" else { continue }
                if portOf(fields[1]) == port { local += 1 }
                if portOf(fields[2]) == port { remote += 1 }
            }
        }
        return readAny ? (local, remote) : nil
    }

    static func portOf(_ address: Substring) -> UInt16? {
        guard let colon = address.lastIndex(of: ":") else { return nil }
        return UInt16(address[address.index(after: colon)...], radix: 16)
    }

    static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
