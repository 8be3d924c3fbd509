#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kernel

/// Where a server's ready line and counters go: text lines on stdout for a person, or control
/// messages (`muxlab serve --control`) for the driver, which opens and closes the measured windows.
public enum ServerOutput {
    /// Set once, before the server starts, by `muxlab serve --control`.
    nonisolated(unsafe) public private(set) static var channel: ControlChannel?

    /// `ready port=... pid=... k=v ...`, or the same as a `.ready` message.
    public static func ready(_ line: String) {
        guard let channel else { writeLine(line); return }
        let kv = lineKeyValues(line)
        channel.send(.ready(port: kv["port"].flatMap { UInt16($0) } ?? 0, pid: getpid(), settings: kv))
    }

    /// A `stats k=v ...` line (on SIGUSR1, at exit), or the same as `.counters`.
    public static func stats(_ line: String) {
        guard let channel else { writeLine(line); return }
        var values: [String: UInt64] = [:]
        for (k, v) in lineKeyValues(line) { if let n = UInt64(v) { values[k] = n } }
        channel.send(.counters(window: nil, values: values))
    }

    /// Starts the control thread: it reads the driver's messages on stdin (`.stop`). The window's
    /// counters are not asked for here: the driver reads the file the server publishes them to.
    public static func startControl() throws {
        let channel = ControlChannel.standard
        self.channel = channel
        try startThread {
            // This thread takes no signal: SIGUSR1/SIGTERM reach the loop or the supervisor.
            var all = sigset_t()
            sigfillset(&all)
            pthread_sigmask(SIG_BLOCK, &all, nil)
            while true {
                let message: ControlMessage?
                do { message = try channel.receive(timeout: 1) } catch {
                    writeLine("muxlab serve: \(error)", fd: 2)
                    continue
                }
                switch message {
                case .stop:
                    kill(getpid(), SIGTERM)
                case nil where channel.closed:
                    return  // the driver is gone; PR_SET_PDEATHSIG ends the server
                default:
                    continue
                }
            }
        }
    }
}
