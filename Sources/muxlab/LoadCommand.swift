import ArgumentParser
import Foundation
import Kernel
import Load

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Drive a server with a mix of idle and active connections; closed or open loop.",
        discussion: """
        Closed loop (default): each active connection keeps one request outstanding.
        Open loop (--rate): requests are scheduled at a fixed total rate and each latency is
        measured from its intended send time (coordinated omission corrected, as wrk2 does).

        EXAMPLES:
          muxlab load --target 127.0.0.1:8080 --connections 100 --active 10
          muxlab load --target 127.0.0.1:8080 --connections 10000 --active 100 --rate 20000 --duration 10s --json
          muxlab load --target 127.0.0.1:8080 --protocol http --connections 50 --cpus 0
        """
    )

    @Option(help: "HOST:PORT of the server (loopback unless --allow-non-loopback).")
    var target: String

    @Option(help: "Connections to hold open, 1-100000.")
    var connections: Int = 10

    @Option(help: "How many of them send requests, 0-connections (default: all).")
    var active: Int?

    @Option(help: "Total requests/s, 1-10000000 (open loop); omit for closed loop.")
    var rate: Int?

    @Option(help: "Measured time, 0.1s-3600s.")
    var duration: DurationArgument = .init(seconds: 5)

    @Option(help: "Warm-up before measuring, 0-600s.")
    var warmup: DurationArgument = .init(seconds: 1)

    @Option(help: "Echo request size in bytes, 1-1048576.")
    var messageSize: Int = 64

    @Option(name: .customLong("protocol"), help: "echo or http.")
    var wire: WireProtocol = .echo

    @Option(help: "New connections per second while connecting, 1-1000000.")
    var connectRate: Int = 20_000

    @Option(help: "Per-request timeout, 0.01s-600s.")
    var requestTimeout: DurationArgument = .init(seconds: 5)

    @Option(help: "CPUs to pin the load generator to.")
    var cpus: CPUList?

    @Flag(help: "Print one JSON summary on stdout.")
    var json = false

    @Flag(help: "Print `phase connected|measure|done` lines (used by the driver).")
    var phases = false

    @Flag(help: "Allow a target outside 127.0.0.0/8 and ::1.")
    var allowNonLoopback = false

    func validate() throws {
        try check(connections, 1...100_000, "--connections")
        if let active { try check(active, 0...connections, "--active", unit: " (at most --connections)") }
        if let rate { try check(rate, 1...10_000_000, "--rate", unit: " requests/s") }
        try check(duration.seconds, 0.1...3600, "--duration", unit: " s")
        try check(warmup.seconds, 0...600, "--warmup", unit: " s")
        try check(messageSize, 1...1_048_576, "--message-size", unit: " bytes")
        try check(connectRate, 1...1_000_000, "--connect-rate", unit: " connections/s")
        try check(requestTimeout.seconds, 0.01...600, "--request-timeout", unit: " s")
    }

    func run() throws {
        let endpoint: Endpoint
        do { endpoint = try Endpoint(parsing: target) } catch let e as ValueError { throw ValidationError(e.description) }
        var config = LoadConfig(target: endpoint)
        config.connections = connections
        config.active = active ?? connections
        config.rate = rate
        config.duration = duration.seconds
        config.warmup = warmup.seconds
        config.messageSize = messageSize
        config.wire = wire
        config.connectRate = connectRate
        config.requestTimeout = requestTimeout.seconds
        config.cpus = cpus
        config.printPhases = phases
        config.allowNonLoopback = allowNonLoopback
        let summary: LoadSummary
        do {
            summary = try LoadGenerator(config).run()
        } catch let e as LoadError {
            writeLine("muxlab load: \(e)", fd: 2)
            throw ExitCode(2)
        } catch let e as ValueError {
            throw ValidationError(e.description)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            writeLine(String(decoding: try encoder.encode(summary), as: UTF8.self))
        } else {
            writeLine(Self.humanReadable(summary))
        }
        if summary.errorsTotal > 0 && summary.requests == 0 { throw ExitCode(1) }
    }

    static func humanReadable(_ s: LoadSummary) -> String {
        func f(_ v: Double?) -> String { v.map { String(format: "%.1f", $0) } ?? "-" }
        return """
        target \(s.target)  \(s.mode) loop\(s.targetRPS.map { " at \($0) req/s" } ?? "")  connections \(s.connections) (\(s.active) active)  cpus \(s.cpus)
        requests \(s.requests) in \(s.durationS) s = \(String(format: "%.1f", s.throughputRPS)) req/s
        latency us: p50 \(f(s.latencyUs.p50))  p90 \(f(s.latencyUs.p90))  p99 \(f(s.latencyUs.p99))  p99.9 \(f(s.latencyUs.p999))  max \(f(s.latencyUs.max))
        errors \(s.errorsTotal): connect \(s.errors.connect), read \(s.errors.read), write \(s.errors.write), timeout \(s.errors.timeout), wrong response \(s.errors.wrongResponse)
        client cpu \(s.clientCPUSeconds) s
        """
    }
}
