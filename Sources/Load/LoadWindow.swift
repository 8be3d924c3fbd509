#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import Histogram
import Kernel

/// The measured window's edges (self-timed, or the driver's over the control channel), the phase
/// lines, and a child load's start signal.
extension LoadLoop {
    /// The measured window opens: counts, errors, latencies and CPU start from zero.
    func openWindow(_ now: UInt64) {
        measuring = true
        requests = 0
        errors = ErrorCounts()
        histogram.reset()
        // Open loop: the window's slots are those released while it is open.
        windowEnd = .max
        slots = 0
        unsent = 0
        inFlightAtOpen = openLoop ? slotsOutstanding() : 0
        windowOpenedAt = now
        cpuAtOpen = cpuSeconds()
        announce(.measure)
    }

    /// The window closes: its summary is kept, and sent to the driver under control.
    func closeWindow(_ now: UInt64) {
        if openLoop && activeCount > 0 {
            // Slots due before the close that the last pass did not reach go out as usual: in flight at the close.
            windowEnd = now
            _ = releaseSlots(through: now &- 1)
            inFlightAtClose = slotsOutstanding()
        }
        measuring = false
        let cpu = cpuSeconds() - cpuAtOpen
        announce(.done)
        // Building the summary allocates; give a script that snapshots on "phase done" time to do so first.
        if config.printPhases { usleep(50_000) }
        let s = summary(measured: Double(now - windowOpenedAt) / 1e9, cpu: cpu)
        lastSummary = s
        if let channel = control {
            // A child's parent adds the histogram to the other children's, bucket by bucket; the driver
            // keeps the timing window's in the run directory (histograms/cell-N.hgrm).
            let histogramText = (try? JSONEncoder().encode(histogram)).map { String(decoding: $0, as: UTF8.self) }
            channel.send(.window(id: windowID, summary: s, histogram: histogramText))
        }
    }

    /// The driver's messages: open and close a window, or stop. End of stream stops too.
    func takeControl(_ channel: ControlChannel) throws {
        if !channel.fill() && channel.closed { stopRequested = true }
        while let message = try channel.buffered() {
            let now = monotonicNanos()
            switch message {
            case .open(let id):
                if measuring { closeWindow(now) }
                windowID = id
                openWindow(now)
            case .close(let id) where measuring && id == windowID:
                closeWindow(now)
            case .stop:
                stopRequested = true
            default:
                continue
            }
        }
        if channel.closed { stopRequested = true }
    }

    func announce(_ phase: LoadPhase) {
        guard config.printPhases, let bytes = phaseLines[phase] else { return }
        bytes.withUnsafeBytes { _ = Glibc.write(1, $0.baseAddress, $0.count) }
    }

    /// A multi-process child waits here for the parent's SIGUSR1 (blocked since before connecting).
    func waitForStartSignal() throws {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGUSR1)
        // The parent signals once every child has connected: allow for all of them connecting as slowly as we did.
        let limit = 60 + 2 * LoadGenerator.connectLimit(connections: count, connectRate: config.connectRate)
        var ts = timespec(tv_sec: Int(limit), tv_nsec: 0)
        while true {
            if sigtimedwait(&set, nil, &ts) == SIGUSR1 { return }
            if errno == EINTR { continue }
            throw LoadError("no start signal (SIGUSR1) from the parent load process within \(Int(limit)) s of connecting")
        }
    }
}
