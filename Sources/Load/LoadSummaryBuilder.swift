#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import Histogram
import Kernel

/// The window's summary: requests, errors by kind, latency percentiles, the load's own CPU.
extension LoadLoop {
    func cpuSeconds() -> Double { ProcessStats.rusageCPUSeconds() }

    func summary(measured: Double, cpu: Double) -> LoadSummary {
        var open = 0
        var served = 0
        for i in 0..<count {
            // Open, or opening again: the connections the run still holds.
            if clients[i].state == 1 || clients[i].state == 2 { open += 1 }
            if clients[i].served { served += 1 }
        }
        var s = LoadSummary(
            target: "\(config.target)", mode: config.rate == nil ? "closed" : "open",
            connections: open, active: activeCount, targetRPS: config.rate,
            durationS: (measured * 1000).rounded() / 1000, requests: requests, errors: errors, errorsTotal: errors.total,
            throughputRPS: measured > 0 ? (Double(requests) / measured * 10).rounded() / 10 : 0,
            latencyUs: LatencySummary(histogram), cpus: Placement.affinity().description,
            clientCPUSeconds: (cpu * 1000).rounded() / 1000, idleClosed: idleClosed,
            established: establishedCount, served: served)
        s.connectionsOpened = connectionsOpened
        s.closedByServer = closedByServer
        s.hangups = hangups
        if openLoop {
            s.slots = slots
            s.unsent = unsent
            s.inFlightAtOpen = inFlightAtOpen
            s.inFlightAtClose = inFlightAtClose
        }
        s.requestsPerConnection = requestsPerConnection
        s.processes = 1
        s.latencySamples = Int(histogram.totalCount)
        s.firstConnectError = firstConnectError
        s.firstWrongResponse = firstWrongResponse
        return s
    }
}
