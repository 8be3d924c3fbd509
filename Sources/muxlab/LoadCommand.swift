import ArgumentParser
import Foundation
import Kernel
import Load
import Vocabulary

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Drive a server with a mix of idle and active connections; closed or open loop.",
        discussion: """
        Closed loop (default): each active connection keeps one request outstanding.
        Open loop (--rate): requests are scheduled at a fixed total rate and each latency is
        measured from its intended send time (coordinated omission corrected, as wrk2 does).
        Slots are dealt round-robin over the active connections; a slot whose connection is busy
        waits (up to \(LoadGenerator.slotBacklog) per connection) and goes out when it frees, latency still from its slot.
        Slots due within --batch (default \(Int(LoadGenerator.defaultBatch * 1e3)) ms) go out in one pass, so the loop wakes once
        per batch; a slot sent before its time counts latency from its send.
        Every slot of the window is accounted for, exactly: requests + timeouts + unsent (+ read,
        write and wrong-response errors) = slots + in_flight_at_open - in_flight_at_close (--json);
        unsent: slots that could not be sent (their connection's backlog full while busy or
        reconnecting, or the connection dead).
        A request unanswered for --request-timeout counts as a timeout and its connection is
        replaced, so its later slots are still sent.
        Short connections (--requests-per-connection N): an active connection closes after N
        answers and a new one takes its place; latency is per request, connect time excluded.
        A server that closes after its answer ends the connection, not an error (closed_by_server).
        --hang-up: each active connection sends one request and resets the connection unread.
        More connections than one process may open (or --processes P) run P child processes,
        pinned round-robin over --cpus; their histograms are merged into one summary.
        HTTP answers are read whole (Content-Length, chunked or to the close; 1xx skipped) and any 2xx
        counts unless --expect-status says otherwise; a `Connection: close` answer replaces its connection
        (closed_by_server). The first wrong answer's reason is printed (first_wrong_response in --json).
        On a terminal (one load process, not --json) a line of progress on stderr, once a second.

        EXAMPLES:
          muxlab load --target 127.0.0.1:8080 --connections 100 --active 10
          muxlab load --target 127.0.0.1:8080 --connections 10000 --active 100 --rate 20000 --duration 10s --json
          muxlab load --target 127.0.0.1:8080 --protocol http --connections 50 --cpus 0
          muxlab load --target 127.0.0.1:8080 --protocol http --connections 20 --requests-per-connection 1
          muxlab load --target 127.0.0.1:8000 --protocol http --method POST --path /orders --header 'Content-Type: application/json' --body-file order.json
          muxlab load --target 127.0.0.1:8000 --protocol http --request-file requests.http --expect-status 201
          muxlab load --target 127.0.0.1:8080 --connections 10 --hang-up --duration 2s
          muxlab load --target 127.0.0.1:8080 --protocol http --connections 10 --pipeline 16
          muxlab load --target 127.0.0.1:8080 --connections 60000 --active 200 --processes 4 --cpus 0-1 --json
        """
    )

    @Option(help: "HOST:PORT of the server (loopback unless --allow-non-loopback or inside a network namespace muxlab created).")
    var target: String

    @Option(help: "Connections to hold open, 1-100000.")
    var connections: Int = 10

    @Option(help: "How many of them send requests, 0-connections (default: all).")
    var active: Int?

    @Option(help: "Total requests/s, 1-10000000 (open loop); omit for closed loop.")
    var rate: Int?

    @Option(help: "Measured time, 0.1s-7200s.")
    var duration: DurationArgument = .init(seconds: 5)

    @Option(help: "Warm-up before measuring, 0-600s.")
    var warmup: DurationArgument = .init(seconds: 1)

    @Option(help: "Echo request size in bytes, 1-1048576.")
    var messageSize: Int = 64

    @Option(name: .customLong("protocol"), help: "echo or http.")
    var wire: WireProtocol = .echo

    @OptionGroup(title: "HTTP request")
    var request: HTTPRequestOptions

    @Option(help: ArgumentHelp("Closed loop: requests each active connection keeps in flight, written back to back and answered in order, each timed from its own send, 1-\(LoadGenerator.maxPipeline).", valueName: "n"))
    var pipeline = 1

    @Option(help: "New connections per second while connecting, 1-1000000.")
    var connectRate: Int = 20_000

    @Option(help: "Per-request timeout, 0.01s-600s; a timed-out request's connection is replaced.")
    var requestTimeout: DurationArgument = .init(seconds: 5)

    @Option(help: "Open loop: slots due within this go out together, 0-10ms (0: one wake per slot).")
    var batch: DurationArgument = .init(seconds: LoadGenerator.defaultBatch)

    @Option(help: "CPUs to pin the load generator to.")
    var cpus: CPUList?

    @Flag(help: "Print one JSON summary on stdout.")
    var json = false

    @Flag(help: "Print `phase connected|measure|done` lines as the self-timed window opens and closes.")
    var phases = false

    @Flag(help: "Allow a target outside 127.0.0.0/8 and ::1.")
    var allowNonLoopback = false

    @Option(help: "Answers per connection before an active one is closed and reopened, 0-1000000 (0: keep alive).")
    var requestsPerConnection: Int = 0

    @Flag(help: "Each active connection sends one request and resets the connection without reading the answer (claim H1).")
    var hangUp = false

    @Option(help: "Load processes, 1-64 (default: as many as --connections needs, \(LoadGenerator.connectionsPerProcess) per process).")
    var processes: Int?

    @Flag(help: .hidden)
    var loadChild = false

    /// The driver opens and closes the windows over stdin and reads each window's summary on stdout.
    @Flag(help: .hidden)
    var control = false

    /// A child of a self-timed multi-process load: its own window, sent to its parent.
    @Flag(help: .hidden)
    var selfTimed = false

    @Option(help: .hidden)
    var sourceFirst: Int?

    /// The driver's counters file, where this process publishes its count of answers for the driver to
    /// read at each window's edge, beside the server's (made by `muxlab bench`).
    @Option(help: .hidden)
    var counters: String?

    @Option(help: .hidden)
    var counterSlot = 0

    func validate() throws {
        try check(connections, 1...100_000, "--connections")
        if let active { try check(active, 0...connections, "--active", unit: " (at most --connections)") }
        if let rate { try check(rate, 1...10_000_000, "--rate", unit: " requests/s") }
        try check(duration.seconds, 0.1...7200, "--duration", unit: " s")
        try check(warmup.seconds, 0...600, "--warmup", unit: " s")
        try check(messageSize, 1...1_048_576, "--message-size", unit: " bytes")
        try check(connectRate, 1...1_000_000, "--connect-rate", unit: " connections/s")
        try check(requestTimeout.seconds, 0.01...600, "--request-timeout", unit: " s")
        try check(batch.seconds * 1000, 0...10, "--batch", unit: " ms")
        try check(requestsPerConnection, 0...1_000_000, "--requests-per-connection", unit: " requests")
        if hangUp && requestsPerConnection != 0 {
            throw ValidationError("--hang-up reads no answers, so --requests-per-connection \(requestsPerConnection) cannot apply: use one or the other")
        }
        if let processes {
            try check(processes, 1...64, "--processes")
            try check(processes, 1...connections, "--processes", unit: " (at most --connections: each process needs a connection)")
        }
        if let sourceFirst { try check(sourceFirst, 0...60_000, "--source-first") }
        try check(pipeline, 1...LoadGenerator.maxPipeline, "--pipeline", unit: " requests in flight per connection")
        if pipeline > 1, let clash = rate != nil ? "--rate (the open loop's slots each wait for a free connection)"
            : hangUp ? "--hang-up (no answer is read)"
            : requestsPerConnection > 0 ? "--requests-per-connection (a connection closes between answers)" : nil {
            throw ValidationError("--pipeline \(pipeline) keeps requests in flight in the closed loop; it cannot go with \(clash)")
        }
        if wire != .http {
            if let flag = request.given.first {
                throw ValidationError("\(flag) describes HTTP requests; it needs --protocol http (--protocol is \(wire.rawValue))")
            }
        }
        try check(counterSlot, 0...LoadCounterSlot.slots - 1, "--counter-slot")
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
        config.pipeline = pipeline
        config.http = request.spec
        if wire == .http {
            // Refused here, once, before any connection or child process.
            do { _ = try config.http.build(host: "\(endpoint)") } catch let e as LoadError { throw ValidationError(e.description) }
        }
        config.connectRate = connectRate
        config.requestTimeout = requestTimeout.seconds
        config.batch = batch.seconds
        config.cpus = cpus
        config.printPhases = phases
        config.allowNonLoopback = allowNonLoopback
        config.requestsPerConnection = requestsPerConnection
        config.hangUp = hangUp
        config.processes = processes ?? LoadProcesses.automaticCount(connections: connections)
        config.sourceFirst = sourceFirst
        config.counters = counters
        config.counterSlot = counterSlot
        config.control = control
        config.selfTimed = selfTimed
        // On a terminal, unless the output is for a program (--json, the driver's control, a parent load).
        config.progress = isatty(2) == 1 && isatty(1) == 1 && !json && !control && !loadChild && !phases
        if loadChild {
            config.waitForStart = true
            config.isChild = true
            config.control = true
        }
        let summary: LoadSummary
        do {
            if config.processes > 1 {
                summary = try LoadProcesses(config).run()
            } else {
                summary = try LoadGenerator(config).run()
            }
        } catch let e as LoadError {
            writeLine("muxlab load\(loadChild ? " (load process pid \(getpid()))" : ""): \(e)", fd: 2)
            throw ExitCode(2)
        } catch let e as ValueError {
            throw ValidationError(e.description)
        }
        // Under control every window's summary went out as a message already.
        if config.control { return }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            writeLine(String(decoding: try encoder.encode(summary), as: UTF8.self))
        } else {
            writeLine(Self.humanReadable(summary))
        }
        // Nothing got through: no answer, and (--hang-up) no request delivered either.
        if summary.errorsTotal > 0 && summary.requests == 0 && (summary.hangups ?? 0) == 0 { throw ExitCode(1) }
    }

    static func humanReadable(_ s: LoadSummary) -> String {
        func f(_ v: Double?) -> String { v.map { String(format: "%.1f", $0) } ?? "-" }
        return """
        target \(s.target)  \(s.mode) loop\(s.targetRPS.map { " at \($0) req/s" } ?? "")  connections \(s.connections) (\(s.active) active)  cpus \(s.cpus)
        requests \(s.requests) in \(s.durationS) s = \(String(format: "%.1f", s.throughputRPS)) req/s
        latency us: p50 \(f(s.latencyUs.p50))  p90 \(f(s.latencyUs.p90))  p99 \(f(s.latencyUs.p99))  p99.9 \(f(s.latencyUs.p999))  max \(f(s.latencyUs.max))
        \(s.slots.map { "slots \($0), unsent \(s.unsent ?? 0)\n" } ?? "")errors \(s.errorsTotal): connect \(s.errors.connect), read \(s.errors.read), write \(s.errors.write), timeout \(s.errors.timeout), wrong response \(s.errors.wrongResponse)\(s.firstConnectError.map { "\nfirst connect error: \($0)" } ?? "")\(s.firstWrongResponse.map { "\nfirst wrong response: \($0)" } ?? "")
        connections opened \(s.connectionsOpened ?? 0), closed by server \(s.closedByServer ?? 0), hang-ups \(s.hangups ?? 0), processes \(s.processes ?? 1)
        client cpu \(s.clientCPUSeconds) s
        """
    }
}
