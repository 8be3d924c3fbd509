#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Set by SIGTERM/SIGINT; the loop checks it after every wait (a signal ends the wait).
nonisolated(unsafe) public var reactorStopRequested: sig_atomic_t = 0
/// Set by SIGUSR1: print the counters line now and go on.
nonisolated(unsafe) public var reactorStatsRequested: sig_atomic_t = 0
/// Write end of the reactor's wake-up pipe; the signal handlers write a byte so that a signal
/// landing between the flag check and the wait still ends the wait (-1 until a reactor exists).
nonisolated(unsafe) public var reactorWakeFD: Int32 = -1

/// For the signal handlers: one byte into the wake-up pipe (write(2) is async-signal-safe).
public func wakeReactor() {
    guard reactorWakeFD >= 0 else { return }
    var byte: UInt8 = 1
    _ = write(reactorWakeFD, &byte, 1)
}
