#if canImport(Glibc)
import Glibc
#endif
import Kernel

/// accept(2) errors that belong to the new connection, not the listener: accept hands on the
/// connection's pending network errors, and the caller goes on as after EAGAIN.
@inline(__always)
func isClientAcceptError(_ e: Int32) -> Bool {
    switch e {
    case ECONNABORTED, EPROTO, EPERM, ENOBUFS, ENOMEM,
         ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH:
        return true
    default:
        return false
    }
}

/// The reserve-descriptor trick (claim E4): one descriptor held open so that, out of
/// descriptors, a waiting client can still be accepted and closed rather than left queued
/// (where a level-triggered listener would report it forever).
struct ReserveDescriptor {
    private var fd: Int32 = open("/dev/null", O_RDONLY | O_CLOEXEC)
    private var logged = false

    /// A reserve is held now.
    var isHeld: Bool { fd >= 0 }

    /// Says once that clients are being shed, frees the reserve, accepts one waiting client with
    /// `accept` and closes it, re-reserves. nil when no reserve was held (nothing could be freed);
    /// else whether a client was shed.
    mutating func shed(accepting accept: () -> Int32) -> Bool? {
        if !logged {
            logged = true
            writeLine("muxlab serve: out of descriptors (EMFILE); shedding new clients with the reserve descriptor", fd: 2)
        }
        guard fd >= 0 else { return nil }
        FD.close(fd)
        let client = accept()
        if client >= 0 { FD.close(client) }
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        return client >= 0
    }
}
