import Testing
import Vocabulary

/// The one vocabulary: names, defaults and combination rules the server, the workload loader and the
/// claim rules share, and the ready message's fields that carry a variant to results.csv.
@Suite("Vocabulary: models, modes and the variant in force")
struct VocabularyTests {
    @Test("a variant survives the ready message: its fields read back as the same variant")
    func readyRoundTrip() throws {
        var variant = ServerVariant(model: .multiReactorPool, io: .epollLT, wire: .http)
        variant.accept = .sharedEpoll
        variant.reactors = 2
        variant.workers = 6
        variant.copy = .staged
        variant.queue = .perWorker
        variant.edgeRead = .untilShort
        variant.idleTimeout = 1.5
        variant.fdLimit = 4096
        variant.computeMicros = 200
        variant.heavyShare = 0.1
        variant.heavyMicros = 2000
        let fields = Dictionary(uniqueKeysWithValues: variant.readyFields.map { ($0.key, $0.value) })
        #expect(fields["accept"] == "shared-epoll" && fields["idle_timeout"] == "1.5" && fields["heavy_us"] == "2000")
        #expect(try ServerVariant(readyFields: fields) == variant)
    }

    @Test("a ready message missing a field or naming an unknown mode is refused, naming it")
    func readyRefusals() throws {
        var fields = Dictionary(uniqueKeysWithValues: ServerVariant().inForce(threadStack: 0, fdLimit: 1024).readyFields.map { ($0.key, $0.value) })
        fields["copy"] = "zero"
        #expect(throws: VariantError("the ready message says copy=zero: not one of direct, staged, splice")) { try ServerVariant(readyFields: fields) }
        fields["copy"] = nil
        #expect(throws: VariantError("the ready message has no copy=")) { try ServerVariant(readyFields: fields) }
    }

    @Test("the server's choices: accept and workers by model, the stack for thread-per-connection only")
    func inForce() {
        let prefork = ServerVariant(model: .prefork, io: .epollET).inForce(threadStack: 8 << 20, fdLimit: 1024)
        #expect(prefork.accept == .sharedEpoll && prefork.workers == 4 && prefork.threadStack == nil)
        let blocking = ServerVariant(model: .prefork).inForce(threadStack: 0, fdLimit: 1024)
        #expect(blocking.io == .blocking && blocking.accept == .blocking)
        let reactor = ServerVariant(model: .reactor).inForce(threadStack: 0, fdLimit: 1024)
        #expect(reactor.accept == nil && reactor.workers == 0 && reactor.io == .epollET)
        let threads = ServerVariant(model: .threadPerConnection).inForce(threadStack: 256 << 10, fdLimit: 1024)
        #expect(threads.threadStack == 256 << 10 && !threads.threadStackIsGlibcDefault && threads.io == .blocking)
        var asked = ServerVariant(model: .threadPerConnection)
        asked.threadStack = 0
        let glibc = asked.inForce(threadStack: 8 << 20, fdLimit: 1024)
        #expect(glibc.threadStack == 8 << 20 && glibc.threadStackIsGlibcDefault)
        #expect(ServerVariant(model: .multiReactor).inForce(threadStack: 0, fdLimit: 1).accept == .acceptor)
    }

    @Test("each combination rule names the value and what is allowed, in the caller's spelling")
    func problems() {
        var v = ServerVariant(model: .reactor)
        v.reactors = 8
        #expect(v.problems().map(\.text) == ["--reactors 8 applies to multi-reactor, multi-reactor-pool only, not --model reactor"])
        #expect(v.problems(ServerVariant.workloadSpelling).map(\.text) == ["reactors = 8 applies to multi-reactor, multi-reactor-pool only, not model = \"reactor\""])
        var io = ServerVariant(model: .proactor, io: .poll)
        #expect(io.problems().map(\.text) == ["--model proactor runs on --io io_uring, not poll"])
        io.io = .ioUring
        #expect(io.problems().isEmpty)
        var splice = ServerVariant(model: .reactor, wire: .http)
        splice.copy = .splice
        #expect(splice.problems().first?.text.contains("--copy splice moves bytes socket to socket: it needs --protocol echo, not http") == true)
        var heavy = ServerVariant(model: .reactor)
        heavy.heavyShare = 0.1
        #expect(heavy.problems().first?.text.contains("go together") == true)
        var accept = ServerVariant(model: .prefork, io: .select)
        accept.accept = .epollExclusive
        #expect(accept.problems().map(\.text) == ["--accept epoll-exclusive does not apply to --model prefork --io select; allowed: shared-epoll, reuseport"])
        #expect(ServerVariant.standard.problems().isEmpty)
    }

    @Test("server_args: both flag forms, real values parsed, unknown values refused, other flags left to the server")
    func flags() throws {
        var v = ServerVariant(model: .threadPerConnection)
        try v.apply(flags: ["--thread-stack", "default", "--idle-timeout=250ms", "--backlog", "64", "--blocking", "--read-size", "16"])
        #expect(v.threadStack == 0 && v.idleTimeout == 0.25 && v.blockingSockets && v.readSize == 16)
        try v.apply(flags: ["--thread-stack=8M"])
        #expect(v.threadStack == 8 << 20)
        #expect(throws: VariantError("--queue fifo: must be one of global-lock, per-worker")) { try v.apply(flags: ["--queue", "fifo"]) }
        #expect(throws: VariantError.self) { try v.apply(flags: ["--compute-us", "lots"]) }
        #expect(throws: VariantError.self) { try v.apply(flags: ["--thread-stack", "1"]) }
    }

    @Test("FD_SETSIZE comes from glibc's header; each model's back-ends list its default first")
    func constants() {
        #expect(fdSetSize == 1024)
        #expect(ServerModel.reactor.ioModes.first == .epollET && ServerModel.proactor.ioModes == [.ioUring])
        #expect(ServerModel.prefork.processes(workers: 0) == 4 && ServerModel.reactor.processes(workers: 9) == 1)
        #expect(ServerModel.allCases.map(\.number) == [1, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    }
}
