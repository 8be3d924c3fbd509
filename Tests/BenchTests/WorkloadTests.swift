import Foundation
import Testing
import Bench

/// Loads `main.toml` (plus any other files) from a scratch directory.
private func load(_ main: String, others: [String: String] = [:]) throws -> Workload {
    let scratch = try ScratchDirectory()
    for (name, text) in others { try scratch.write(name, text) }
    let path = try scratch.write("main.toml", main)
    return try Workload.load(path: path)
}

/// The WorkloadError message `main.toml` produces, with the scratch directory cut out.
private func loadError(_ main: String, others: [String: String] = [:]) throws -> String {
    let scratch = try ScratchDirectory()
    for (name, text) in others { try scratch.write(name, text) }
    let path = try scratch.write("main.toml", main)
    do {
        let workload = try Workload.load(path: path)
        Issue.record("expected a WorkloadError, got \(workload.cells().count) cells")
        return ""
    } catch let error as WorkloadError {
        return error.description.replacingOccurrences(of: scratch.path + "/", with: "")
    }
}

private let idleScaling = """
    title = "Idle scaling: cost per request vs idle connections"
    [defaults]
    duration = "5s"

    [[experiment]]
    id = "idle-scaling"
    claims = ["M2", "M3", "M4", "M5"]
    description = "cost per request as idle connections grow"
    [experiment.base]
    protocol = "echo"
    active = 10
    [experiment.matrix]
    io = ["select", "poll", "epoll-lt", "epoll-et"]
    connections = [10, 100, 1000, 10000]
    """

@Suite("Workload files")
struct WorkloadTests {
    @Test("a good file loads with its title, experiment and defaults")
    func goodFile() throws {
        let workload = try load(idleScaling)
        #expect(workload.title == "Idle scaling: cost per request vs idle connections")
        #expect(workload.experiments.map(\.id) == ["idle-scaling"])
        #expect(workload.experiments[0].claims == ["M2", "M3", "M4", "M5"])
        #expect(workload.experiments[0].description == "cost per request as idle connections grow")
        #expect(workload.experiments[0].cellIndices == 1...16)

        let cell = workload.cells()[5]
        #expect(cell.experiment == "idle-scaling")
        #expect(cell.claims == ["M2", "M3", "M4", "M5"])
        #expect(cell.protocol == .echo)
        #expect(cell.active == 10)
        #expect(cell.model == "reactor")
        #expect(cell.reactors == 1 && cell.workers == 0)
        #expect(cell.messageSize == 64)
        #expect(cell.rate == nil && !cell.isOpenLoop)
        #expect(cell.duration == 5 && cell.warmup == 1 && cell.timeout == 66)
        #expect(cell.connectRate == 20_000)
        #expect(cell.serverCPUs.description == "1" && cell.clientCPUs.description == "0")
        #expect(cell.numaNode == nil && cell.serverArgs.isEmpty)
    }

    @Test("4 io x 4 connections = 16 cells, first matrix key slowest, numbered 1...n")
    func expansionOrder() throws {
        let cells = try load(idleScaling).cells()
        #expect(cells.count == 16)
        #expect(cells.map(\.index) == Array(1...16))
        #expect(cells[0].label == "io=select connections=10")
        #expect(cells[1].label == "io=select connections=100")
        #expect(cells[4].label == "io=poll connections=10")
        #expect(cells[15].label == "io=epoll-et connections=10000")
        #expect(cells[15].id == "idle-scaling#16")
        #expect(cells.map(\.io) == ["select", "poll", "epoll-lt", "epoll-et"].flatMap { Array(repeating: $0, count: 4) })
    }

    @Test("matrix keys run in the allowed-key order whatever the file order; values keep file order")
    func keyOrderIsFixed() throws {
        let cells = try load("""
            [[experiment]]
            id = "order"
            [experiment.matrix]
            message_size = [64, 16]
            connections = [100, 10]
            model = ["reactor", "iterative"]
            """).cells()
        #expect(cells.count == 8)
        #expect(cells[0].label == "model=reactor connections=100 message_size=64")
        #expect(cells[1].label == "model=reactor connections=100 message_size=16")
        #expect(cells[2].label == "model=reactor connections=10 message_size=64")
        #expect(cells[4].label == "model=iterative connections=100 message_size=64")
    }

    @Test("label shows only keys with more than one value")
    func labelShowsVariation() throws {
        let cells = try load("""
            [[experiment]]
            id = "one"
            [experiment.matrix]
            io = ["poll"]
            server_args = [["--epollout", "always"], []]
            """).cells()
        #expect(cells.map(\.label) == ["server_args=[--epollout always]", "server_args=[]"])
        #expect(cells[0].io == "poll")
        #expect(cells[0].serverArgs == ["--epollout", "always"])
        let single = try load("[[experiment]]\nid = \"single\"\n").cells()
        #expect(single.count == 1 && single[0].label == "")
    }

    @Test("variants: each a set of settings crossed with the matrix, interleaved round by round under repeat")
    func variantsCrossMatrix() throws {
        let cells = try load("""
            [[experiment]]
            id = "open-loop-cost"
            [experiment.base]
            repeat = 2
            [experiment.matrix]
            io = ["poll", "epoll-et"]
            [[experiment.variants]]
            connections = 50
            rate = 50000
            [[experiment.variants]]
            connections = 3
            """).cells()
        #expect(cells.count == 8)
        #expect(cells.map(\.connections) == [50, 50, 3, 3, 50, 50, 3, 3])
        #expect(cells.map(\.rate) == [50000, 50000, nil, nil, 50000, 50000, nil, nil])
        #expect(cells.map(\.io) == ["poll", "epoll-et", "poll", "epoll-et", "poll", "epoll-et", "poll", "epoll-et"])
        #expect(cells.map(\.repetition) == [1, 1, 1, 1, 2, 2, 2, 2])
        #expect(cells[0].label == "io=poll connections=50 rate=50000", "\(cells[0].label)")
        #expect(cells[2].label == "io=poll connections=3 rate=closed-loop", "\(cells[2].label)")
    }

    @Test("a variant is checked like any settings table; repeat belongs to the experiment")
    func variantErrors() throws {
        let head = "[[experiment]]\nid = \"v\"\n"
        #expect(try loadError(head + "variants = 3\n").contains("variants = 3: must be one or more tables"))
        #expect(try loadError(head + "[[experiment.variants]]\nrepeat = 2\n").contains("variant #1: repeat = 2: applies to the whole experiment"))
        let bad = try loadError(head + "[[experiment.variants]]\nconnections = 3\n[[experiment.variants]]\nconections = 4\n")
        #expect(bad.contains("variant #2") && bad.contains("conections"), "\(bad)")
    }

    @Test("defaults < base < matrix; defaults do not reach included files")
    func precedence() throws {
        let workload = try load("""
            include = ["other.toml"]
            [defaults]
            duration = 2
            warmup = "250ms"
            reactors = 2
            [[experiment]]
            id = "layers"
            [experiment.base]
            model = "multi-reactor"
            duration = 3.5
            reactors = 4
            [experiment.matrix]
            reactors = [8]
            """, others: ["other.toml": "[[experiment]]\nid = \"included\"\n"])
        let cells = workload.cells()
        #expect(cells.map(\.experiment) == ["included", "layers"])
        #expect(cells[0].duration == 5 && cells[0].warmup == 1 && cells[0].reactors == 1)
        #expect(cells[1].duration == 3.5)
        #expect(cells[1].warmup == 0.25)
        #expect(cells[1].reactors == 8)
        #expect(cells[1].timeout == 63.75)
    }

    @Test("every typed setting is read")
    func allSettings() throws {
        let cell = try load("""
            [[experiment]]
            id = "all"
            [experiment.base]
            model = "multi-reactor-pool"
            io = "epoll-lt"
            protocol = "http"
            reactors = 2
            workers = 4
            connections = 500
            active = 0
            message_size = 1024
            rate = 50000
            duration = "2m"
            warmup = 0
            connect_rate = 1000
            server_cpus = "0-1"
            client_cpus = "0,1"
            numa_node = 0
            server_args = ["--pool-queue", "global"]
            timeout = "200s"
            """).cells()[0]
        #expect(cell == Cell(
            index: 1, experiment: "all", model: "multi-reactor-pool", io: "epoll-lt", protocol: .http,
            reactors: 2, workers: 4, connections: 500, active: 0, messageSize: 1024, rate: 50000,
            duration: 120, warmup: 0, timeout: 200, connectRate: 1000,
            serverCPUs: .init([0, 1]), clientCPUs: .init([0, 1]), numaNode: 0,
            serverArgs: ["--pool-queue", "global"]))
        #expect(cell.isOpenLoop)
    }

    @Test("includes are relative to the including file, run first and in order")
    func includes() throws {
        let workload = try load("""
            include = ["sub/a.toml", "b.toml"]
            [[experiment]]
            id = "main"
            """, others: [
                "sub/a.toml": "include = [\"c.toml\"]\n[[experiment]]\nid = \"a\"\n[experiment.base]\nmodel = \"reactor-pool\"\n[experiment.matrix]\nworkers = [1, 2]\n",
                "sub/c.toml": "[[experiment]]\nid = \"c\"\n",
                "b.toml": "title = \"ignored\"\n[[experiment]]\nid = \"b\"\n",
            ])
        #expect(workload.experiments.map(\.id) == ["c", "a", "b", "main"])
        #expect(workload.cells().map(\.id) == ["c#1", "a#2", "a#3", "b#4", "main#5"])
        #expect(workload.experiments[1].file.hasSuffix("sub/a.toml"))
        #expect(workload.title == nil)
    }

    @Test("an include cycle is an error naming the chain")
    func includeCycle() throws {
        let message = try loadError("include = [\"a.toml\"]\n", others: [
            "a.toml": "include = [\"b.toml\"]\n",
            "b.toml": "include = [\"a.toml\"]\n[[experiment]]\nid = \"b\"\n",
        ])
        #expect(message == "b.toml: include \"a.toml\": include cycle: a.toml -> b.toml -> a.toml")
        let selfInclude = try loadError("include = [\"main.toml\"]\n")
        #expect(selfInclude.contains("include cycle: main.toml -> main.toml"))
    }

    @Test("a missing include names the including file and strerror")
    func missingInclude() throws {
        let message = try loadError("include = [\"nope.toml\"]\n")
        #expect(message == "main.toml: include \"nope.toml\": nope.toml: cannot open: No such file or directory")
    }

    @Test("a missing workload file names the path")
    func missingFile() {
        #expect(throws: WorkloadError("/nonexistent/w.toml: cannot open: No such file or directory")) {
            try Workload.load(path: "/nonexistent/w.toml")
        }
    }

    @Test("the range error reads as the contract example")
    func rangeMessage() throws {
        let message = try loadError("""
            [[experiment]]
            id = "idle-scaling"
            [experiment.base]
            connections = 0
            """)
        #expect(message == "main.toml: experiment \"idle-scaling\": connections = 0: must be an integer 1...100000")
    }

    @Test("TOML syntax errors carry the line and column")
    func syntaxError() throws {
        let message = try loadError("[[experiment]]\nid = \"x\"\nclaims = [\"M1\"\n")
        #expect(message.hasPrefix("main.toml:3:"), "\(message)")
        #expect(message.contains("TOML syntax error"))
    }

    @Test("the cell is Codable; CPU lists travel as text")
    func cellCodable() throws {
        let cell = try load(idleScaling).cells()[3]
        let json = try JSONEncoder().encode(cell)
        #expect(String(decoding: json, as: UTF8.self).contains("\"serverCPUs\":\"1\""))
        #expect(try JSONDecoder().decode(Cell.self, from: json) == cell)
    }

    /// (what is wrong, the file, text every message must contain)
    static let errorCases: [(String, String, [String])] = [
        ("unknown settings key lists the allowed keys",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\ncolour = \"red\"\n",
         ["experiment \"x\": unknown key \"colour\"", "allowed keys are model, io, protocol, reactors", "server_args, timeout"]),
        ("unknown top-level key",
         "titel = \"x\"\n[[experiment]]\nid = \"x\"\n",
         ["top level: unknown key \"titel\"", "allowed keys are title, include, hosts, defaults, experiment"]),
        ("unknown experiment key",
         "[[experiment]]\nid = \"x\"\nclaim = [\"M1\"]\n",
         ["experiment #1: unknown key \"claim\"", "id, claims, description, base, matrix"]),
        ("integer given as a float",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nconnections = 10.0\n",
         ["connections = 10.0: must be an integer 1...100000, not a floating-point number"]),
        ("string given as an integer",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nmodel = 3\n",
         ["model = 3: must be a string, one of iterative, process-per-connection", "not an integer"]),
        ("integer where a string is expected",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nreactors = \"2\"\n",
         ["reactors = \"2\": must be an integer 1...64, not a string"]),
        ("CPU list given as an integer",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nserver_cpus = 1\n",
         ["server_cpus = 1: must be a CPU list string"]),
        ("bad CPU list",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nserver_cpus = \"3-1\"\n",
         ["server_cpus = \"3-1\": server_cpus '3-1' is not a CPU list"]),
        ("unknown io back-end",
         "[[experiment]]\nid = \"x\"\n[experiment.matrix]\nio = [\"epoll\", \"kqueue\"]\n",
         ["matrix: io = \"epoll\": must be one of blocking, select, poll, epoll-lt, epoll-et, io_uring"]),
        ("out of range in [defaults]",
         "[defaults]\nworkers = 300\n[[experiment]]\nid = \"x\"\n",
         ["main.toml: [defaults]: workers = 300: must be an integer 0...256"]),
        ("out of range in the matrix names the value",
         "[[experiment]]\nid = \"x\"\n[experiment.matrix]\nmessage_size = [64, 2000000]\n",
         ["experiment \"x\": matrix: message_size = 2000000: must be an integer 1...1048576"]),
        ("duration out of range",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nduration = \"2h\"\n",
         ["duration = \"2h\" (7200 s): must be a duration 0.1...3600 s"]),
        ("duration that does not parse",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nwarmup = \"soon\"\n",
         ["warmup = \"soon\": warmup 'soon' is not a duration"]),
        ("duration of the wrong type",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nduration = true\n",
         ["duration = true: must be a duration", "not a boolean"]),
        ("active > connections names both",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nactive = 20\n[experiment.matrix]\nconnections = [100, 10]\n",
         ["experiment \"x\": cell connections=10: active = 20 exceeds connections = 10: active must be an integer 0...connections"]),
        ("active > connections through the default",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nactive = 11\n",
         ["active = 11 exceeds connections = 10"]),
        ("bad claim id",
         "[[experiment]]\nid = \"x\"\nclaims = [\"M2\", \"m3\"]\n",
         ["experiment \"x\": claims = [\"M2\", \"m3\"]: \"m3\" is not a claim id"]),
        ("bad experiment id",
         "[[experiment]]\nid = \"Idle_Scaling\"\n",
         ["experiment #1: id = \"Idle_Scaling\": must match [a-z0-9-]+"]),
        ("missing experiment id",
         "[[experiment]]\nclaims = []\n",
         ["experiment #1: missing id"]),
        ("duplicate experiment id",
         "[[experiment]]\nid = \"x\"\n[[experiment]]\nid = \"x\"\n",
         ["id \"x\" is already used"]),
        ("empty matrix list",
         "[[experiment]]\nid = \"x\"\n[experiment.matrix]\nio = []\n",
         ["experiment \"x\": matrix: io = []: a matrix list must not be empty"]),
        ("matrix value that is not a list",
         "[[experiment]]\nid = \"x\"\n[experiment.matrix]\nio = \"poll\"\n",
         ["matrix: io = \"poll\": matrix values must be lists", "like io = [\"poll\"]"]),
        ("a combination the server refuses is refused at load time (the vocabulary's rules)",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nmodel = \"reactor\"\nreactors = 8\n",
         ["experiment \"x\"", "reactors = 8 applies to multi-reactor, multi-reactor-pool only, not model = \"reactor\""]),
        ("workers on a model without any",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nmodel = \"proactor\"\nworkers = 2\n",
         ["workers = 2 applies to prefork, reactor-worker, reactor-pool, multi-reactor-pool, not model = \"proactor\""]),
        ("an accept mode the model does not take, in server_args",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nmodel = \"prefork\"\nio = \"poll\"\nserver_args = [\"--accept\", \"epoll-exclusive\"]\n",
         ["server_args = [\"--accept\", \"epoll-exclusive\"]: --accept epoll-exclusive does not apply to model = \"prefork\" io = \"poll\"; allowed: shared-epoll, reuseport"]),
        ("a mode value the vocabulary does not know, in server_args",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nserver_args = [\"--copy=zero\"]\n",
         ["server_args = [\"--copy=zero\"]: --copy zero: must be one of direct, staged, splice"]),
        ("matrix value listed twice",
         "[[experiment]]\nid = \"x\"\n[experiment.matrix]\nconnections = [10, 10]\n",
         ["connections = [10, 10]: 10 is listed twice"]),
        ("server_args in the matrix must be lists of lists",
         "[[experiment]]\nid = \"x\"\n[experiment.matrix]\nserver_args = [\"--a\", \"--b\"]\n",
         ["server_args = \"--a\": must be an array of strings"]),
        ("server_args may not set what a key sets",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nserver_args = [\"--io=poll\"]\n",
         ["--io is set by the driver from io"]),
        ("load_args may not set what a key sets",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nload_args = [\"--rate\", \"5\"]\n",
         ["load_args = [\"--rate\", \"5\"]: --rate is set by the driver from rate"]),
        ("timeout shorter than the cell",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nduration = 10\ntimeout = 5\n",
         ["timeout = 5 s is too short", "duration (10 s) + evidence window (1 s) need 12.001 s"]),
        ("slow connect ramp beyond the default timeout",
         "[[experiment]]\nid = \"x\"\n[experiment.base]\nconnections = 100000\nconnect_rate = 1000\n",
         ["timeout = 66 s is too short", "100000 connections at connect_rate = 1000/s, 100 s"]),
        ("experiment written as a single table",
         "[experiment]\nid = \"x\"\n",
         ["experiment must be an array of tables: write each as [[experiment]]"]),
        ("no experiments at all",
         "title = \"empty\"\n",
         ["main.toml: no experiments"]),
    ]

    @Test("each invalid setting gives a message naming file, experiment, key, value and what is allowed",
          arguments: errorCases)
    func errors(_ errorCase: (String, String, [String])) throws {
        let (_, text, expected) = errorCase
        let message = try loadError(text)
        #expect(message.hasPrefix("main.toml"), "\(message)")
        for part in expected {
            #expect(message.contains(part), "\(message)")
        }
    }
}
