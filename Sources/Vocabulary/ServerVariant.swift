import Kernel

/// One server variant as the vocabulary names it: the model, its back-end and every mode that selects
/// behaviour. `muxlab serve` reports the variant in force in its ready message (`readyFields`), the driver
/// stores it in a row's typed columns (`init(readyFields:)`), and the claim rules read those, so a default
/// is decided once, by the server, and never re-derived from the flags a cell passed.
///
/// The combination rules (`problems`) are the same for the server's flags and a workload's keys: a
/// workload that loads runs.
public struct ServerVariant: Equatable, Sendable {
    public var model: ServerModel = .reactor
    public var io: IOMode = .epollET
    public var wire: WireProtocol = .echo
    /// nil: `--accept` not asked for; `acceptInForce` gives the model's default.
    public var accept: AcceptMode?
    public var reactors = 1
    /// 0: the model's default (`workersInForce`).
    public var workers = 0
    public var copy: CopyMode = .direct
    public var alloc: AllocMode = .pooled
    public var queue: QueueMode = .globalLock
    public var sigpipe: SigpipeMode = .ignore
    public var close: CloseMode = .clientFirst
    public var writeInterest: WriteInterest = .onDemand
    public var edgeRead: EdgeRead = .untilEAGAIN
    public var emfile: EMFILEPolicy = .reserveFD
    public var blockingSockets = false
    /// Bytes asked for per read(2).
    public var readSize = 64 * 1024
    /// Seconds without traffic before a connection is closed (claim H3); nil: never.
    public var idleTimeout: Double?
    /// RLIMIT_NOFILE's soft limit in the server (the ready message reports the one in force).
    public var fdLimit: Int?
    public var computeMicros = 0
    public var blockMicros = 0
    /// Thread-per-connection's stack in bytes: as asked (`--thread-stack`; 0: glibc's default), or in force
    /// in a ready message; nil for other models, or none asked.
    public var threadStack: Int?
    /// In force: the stack is glibc's default (RLIMIT_STACK), as `--thread-stack default` asks (claim T1).
    public var threadStackIsGlibcDefault = false
    public var heavyShare = 0.0
    public var heavyMicros = 0

    public init() {}

    /// The defaults every user of a variant starts from (`muxlab serve` with no flags).
    public static let standard = ServerVariant()

    public init(model: ServerModel, io: IOMode? = nil, wire: WireProtocol = .echo) {
        self.model = model
        self.io = io ?? model.ioModes[0]
        self.wire = wire
    }

    /// The accept mode in force: the one asked for, else the model's default.
    public var acceptInForce: AcceptMode { accept ?? model.defaultAccept(io: io) }
    /// Workers in force: the ones asked for, else the model's default.
    public var workersInForce: Int { workers > 0 ? workers : model.defaultWorkers }

    /// The variant with the server's choices made, as its ready message reports it: the accept mode (for
    /// the models that share a listener) and the workers where none were asked, and the thread stack
    /// (thread-per-connection only) and descriptor limit the process has.
    public func inForce(threadStack stack: Int, fdLimit limit: Int) -> ServerVariant {
        var v = self
        v.accept = model.sharesListener ? acceptInForce : nil
        v.workers = workersInForce
        v.threadStackIsGlibcDefault = model == .threadPerConnection && threadStack == 0
        v.threadStack = model == .threadPerConnection ? stack : nil
        v.fdLimit = limit
        return v
    }
}

// MARK: - The settings and how each caller spells them

extension ServerVariant {
    /// A setting the rules speak of: `muxlab serve` names it by its flag, a workload by its key (or, for
    /// the flags a workload passes in `server_args`, by the flag).
    public enum Setting: String, CaseIterable, Sendable {
        case model, io, `protocol`, accept, reactors, workers, copy, alloc, queue
        case threadStack = "thread-stack", heavyShare = "heavy-share", heavyMicros = "heavy-us"

        /// The `muxlab serve` flag.
        public var flag: String { "--" + rawValue }
        /// The workload key, where the setting has one; else it travels in `server_args`.
        public var workloadKey: String? {
            switch self {
            case .model, .io, .protocol, .reactors, .workers: return rawValue
            default: return nil
            }
        }
    }

    /// How a message names a setting and its value: `--reactors 8` for the server, `reactors = 8` for a workload.
    public typealias Spelling = (_ setting: Setting, _ value: String) -> String

    /// `--reactors 8`.
    public static let flagSpelling: Spelling = { setting, value in "\(setting.flag) \(value)" }
    /// `reactors = 8` for a workload key, `--accept x` for a flag it passes in server_args.
    public static let workloadSpelling: Spelling = { setting, value in
        setting.workloadKey.map { "\($0) = \(quotedIfWord(setting, value))" } ?? "\(setting.flag) \(value)"
    }

    private static func quotedIfWord(_ setting: Setting, _ value: String) -> String {
        setting == .reactors || setting == .workers ? value : "\"\(value)\""
    }
}

// MARK: - Combination rules

extension ServerVariant {
    /// A combination the model cannot run: the setting it is about, and a sentence naming the value and
    /// what is allowed.
    public struct Problem: Equatable, Sendable {
        public let setting: Setting
        public let text: String
    }

    /// Every combination the model cannot run; empty when it runs.
    public func problems(_ spell: Spelling = flagSpelling) -> [Problem] {
        var out: [Problem] = []
        func names<T: RawRepresentable>(_ values: [T]) -> String where T.RawValue == String { values.map(\.rawValue).joined(separator: ", ") }
        func models(_ which: (ServerModel) -> Bool) -> String { names(ServerModel.allCases.filter(which)) }
        let model = spell(.model, self.model.rawValue)
        if !self.model.ioModes.contains(io) {
            out.append(Problem(setting: .io, text: "\(model) runs on \(spell(.io, names(self.model.ioModes).replacingOccurrences(of: ", ", with: "|"))), not \(io.rawValue)"))
        }
        if let accept {
            let allowed = self.model.acceptModes(io: io)
            if allowed.isEmpty {
                out.append(Problem(setting: .accept, text: "\(spell(.accept, accept.rawValue)) applies to \(models(\.sharesListener)), not \(model)"))
            } else if !allowed.contains(accept) {
                out.append(Problem(setting: .accept, text: "\(spell(.accept, accept.rawValue)) does not apply to \(model) \(spell(.io, io.rawValue)); allowed: \(names(allowed))"))
            }
        }
        if reactors != 1 && !self.model.hasReactors {
            out.append(Problem(setting: .reactors, text: "\(spell(.reactors, String(reactors))) applies to \(models(\.hasReactors)) only, not \(model)"))
        }
        if workers != 0 && !self.model.takesWorkers {
            out.append(Problem(setting: .workers, text: "\(spell(.workers, String(workers))) applies to \(models(\.takesWorkers)), not \(model)"))
        }
        if self.model == .reactorWorker && workers > 1 {
            out.append(Problem(setting: .workers, text: "\(model) has exactly one worker thread (\(spell(.workers, "1"))); use reactor-pool for \(workers)"))
        }
        if (copy != .direct || alloc != .pooled) && !self.model.isReadinessLoop {
            out.append(Problem(setting: .copy, text: "\(Setting.copy.flag) and \(Setting.alloc.flag) are killer toggles of the reactor models (\(models(\.isReadinessLoop))), not \(model)"))
        }
        if queue != .globalLock && !self.model.hasPool {
            out.append(Problem(setting: .queue, text: "\(spell(.queue, queue.rawValue)) applies to \(models(\.hasPool)), not \(model)"))
        }
        if copy == .splice && wire != .echo {
            out.append(Problem(setting: .copy, text: "\(spell(.copy, "splice")) moves bytes socket to socket: it needs \(spell(.protocol, WireProtocol.echo.rawValue)), not \(wire.rawValue)"))
        }
        if threadStack != nil && self.model != .threadPerConnection {
            out.append(Problem(setting: .threadStack, text: "\(Setting.threadStack.flag) applies to thread-per-connection, not \(model)"))
        }
        if (heavyShare > 0) != (heavyMicros > 0) {
            out.append(Problem(setting: .heavyShare, text: "\(spell(.heavyShare, "\(heavyShare)")) and \(spell(.heavyMicros, String(heavyMicros))) go together: a share above 0 of connections, each request of which burns the microseconds"))
        }
        if heavyMicros > 0 && !self.model.computesOnLoop {
            out.append(Problem(setting: .heavyMicros, text: "\(Setting.heavyMicros.flag) applies to the models that compute on their loops (\(models(\.computesOnLoop))), not \(model)"))
        }
        return out
    }
}

// MARK: - The ready message

extension ServerVariant {
    /// The variant in force as the ready message's `key=value` fields, in order. `accept` is `none` for the
    /// models that do not share a listener; `thread_stack` only for thread-per-connection, `heavy_*` only when set.
    public var readyFields: [(key: String, value: String)] {
        var fields: [(String, String)] = [
            ("model", model.rawValue), ("io", io.rawValue), ("protocol", wire.rawValue),
            ("fd_limit", fdLimit.map(String.init) ?? "none"), ("epollout", writeInterest.rawValue), ("et_read", edgeRead.rawValue),
            ("read_size", String(readSize)), ("blocking", String(blockingSockets)), ("emfile", emfile.rawValue),
            ("idle_timeout", idleTimeout.map { "\($0)" } ?? "off"),
            ("accept", model.sharesListener ? acceptInForce.rawValue : "none"), ("reactors", String(reactors)),
            ("workers", String(workersInForce)), ("compute_us", String(computeMicros)), ("block_us", String(blockMicros)),
            ("copy", copy.rawValue), ("alloc", alloc.rawValue), ("queue", queue.rawValue), ("sigpipe", sigpipe.rawValue),
            ("close", close.rawValue),
        ]
        if let threadStack { fields += [("thread_stack", String(threadStack)), ("thread_stack_default", String(threadStackIsGlibcDefault))] }
        if heavyMicros > 0 { fields += [("heavy_share", "\(heavyShare)"), ("heavy_us", String(heavyMicros))] }
        return fields
    }

    /// The variant a ready message reports; throws naming a field that is missing or holds a value the
    /// vocabulary does not know (a server of another version, or not muxlab's).
    public init(readyFields fields: [String: String]) throws {
        func text(_ key: String) throws -> String {
            guard let value = fields[key] else { throw VariantError("the ready message has no \(key)=") }
            return value
        }
        func mode<M: RawRepresentable & CaseIterable>(_ key: String) throws -> M where M.RawValue == String {
            let value = try text(key)
            guard let mode = M(rawValue: value) else {
                throw VariantError("the ready message says \(key)=\(value): not one of \(M.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return mode
        }
        func number<N: LosslessStringConvertible>(_ key: String) throws -> N {
            let value = try text(key)
            guard let n = N(value) else { throw VariantError("the ready message says \(key)=\(value): not a number") }
            return n
        }
        self.init()
        model = try mode("model")
        io = try mode("io")
        wire = try mode("protocol")
        fdLimit = try text("fd_limit") == "none" ? nil : number("fd_limit")
        writeInterest = try mode("epollout")
        edgeRead = try mode("et_read")
        readSize = try number("read_size")
        blockingSockets = try number("blocking")
        emfile = try mode("emfile")
        idleTimeout = try text("idle_timeout") == "off" ? nil : number("idle_timeout")
        accept = try text("accept") == "none" ? nil : mode("accept") as AcceptMode
        reactors = try number("reactors")
        workers = try number("workers")
        computeMicros = try number("compute_us")
        blockMicros = try number("block_us")
        copy = try mode("copy")
        alloc = try mode("alloc")
        queue = try mode("queue")
        sigpipe = try mode("sigpipe")
        close = try mode("close")
        threadStack = try fields["thread_stack"].map { _ in try number("thread_stack") }
        threadStackIsGlibcDefault = try fields["thread_stack_default"].map { _ in try number("thread_stack_default") } ?? false
        heavyShare = try fields["heavy_share"].map { _ in try number("heavy_share") } ?? 0
        heavyMicros = try fields["heavy_us"].map { _ in try number("heavy_us") } ?? 0
    }
}

/// A ready message or a flag the vocabulary cannot read.
public struct VariantError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

// MARK: - Flags a workload passes in server_args

extension ServerVariant {
    /// Applies the vocabulary's flags among `muxlab serve` arguments (`--accept reuseport`, `--copy=splice`),
    /// so a workload's cell is judged by the same rules before it runs. An unknown value throws, naming the
    /// flag and what is allowed; flags outside the vocabulary (`--backlog`, `--busy-poll-us`) are the
    /// server's to check. `--thread-stack default` gives 0, as `muxlab serve` takes it (glibc's default).
    public mutating func apply(flags: [String]) throws {
        var index = 0
        while index < flags.count {
            let word = flags[index]
            index += 1
            guard word.hasPrefix("--") else { continue }
            var name = word, value: String?
            if let equals = word.firstIndex(of: "=") {
                name = String(word[..<equals])
                value = String(word[word.index(after: equals)...])
            } else if index < flags.count, !flags[index].hasPrefix("--") {
                value = flags[index]
            }
            guard try apply(name, value) else { continue }
            if !word.contains("="), value != nil { index += 1 }
        }
    }

    /// One flag; false when it is not the vocabulary's or takes no value (`--blocking`).
    private mutating func apply(_ flag: String, _ value: String?) throws -> Bool {
        func mode<M: RawRepresentable & CaseIterable>(_ type: M.Type) throws -> M where M.RawValue == String {
            guard let value, let mode = M(rawValue: value) else {
                throw VariantError("\(flag) \(value ?? "(no value)"): must be one of \(M.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return mode
        }
        func number<N: LosslessStringConvertible>(_ type: N.Type) throws -> N {
            guard let value, let n = N(value) else { throw VariantError("\(flag) \(value ?? "(no value)"): must be a number") }
            return n
        }
        switch flag {
        case "--accept": accept = try mode(AcceptMode.self)
        case "--copy": copy = try mode(CopyMode.self)
        case "--alloc": alloc = try mode(AllocMode.self)
        case "--queue": queue = try mode(QueueMode.self)
        case "--sigpipe": sigpipe = try mode(SigpipeMode.self)
        case "--close": close = try mode(CloseMode.self)
        case "--epollout": writeInterest = try mode(WriteInterest.self)
        case "--et-read": edgeRead = try mode(EdgeRead.self)
        case "--emfile": emfile = try mode(EMFILEPolicy.self)
        case "--read-size": readSize = try number(Int.self)
        case "--fd-limit": fdLimit = try number(Int.self)
        case "--compute-us": computeMicros = try number(Int.self)
        case "--block-us": blockMicros = try number(Int.self)
        case "--heavy-share": heavyShare = try number(Double.self)
        case "--heavy-us": heavyMicros = try number(Int.self)
        case "--thread-stack":
            guard let value, let bytes = ThreadStack.parse(value) else {
                throw VariantError("\(flag) \(value ?? "(no value)"): must be \(ThreadStack.allowedText)")
            }
            threadStack = bytes
        case "--idle-timeout":
            do {
                idleTimeout = try parseDuration(value ?? "", name: flag)
            } catch {
                throw VariantError("\(error)")
            }
        case "--blocking":
            blockingSockets = true
            return false
        default: return false
        }
        return true
    }
}

extension ServerVariant {
    /// The value in force of a vocabulary flag, spelt as the flag takes it (`--epollout` → "on-demand");
    /// nil for a flag outside the vocabulary or a setting that is off (`--idle-timeout`, `--blocking`).
    public func value(of flag: String) -> String? {
        switch flag {
        case "--accept": return accept?.rawValue
        case "--copy": return copy.rawValue
        case "--alloc": return alloc.rawValue
        case "--queue": return queue.rawValue
        case "--sigpipe": return sigpipe.rawValue
        case "--close": return close.rawValue
        case "--epollout": return writeInterest.rawValue
        case "--et-read": return edgeRead.rawValue
        case "--emfile": return emfile.rawValue
        case "--read-size": return String(readSize)
        case "--fd-limit": return fdLimit.map(String.init)
        case "--compute-us": return String(computeMicros)
        case "--block-us": return String(blockMicros)
        case "--heavy-share": return heavyMicros > 0 ? "\(heavyShare)" : nil
        case "--heavy-us": return heavyMicros > 0 ? String(heavyMicros) : nil
        case "--thread-stack": return threadStack.map(String.init)
        case "--idle-timeout": return idleTimeout.map { "\($0)s" }
        case "--blocking": return blockingSockets ? "" : nil
        default: return nil
        }
    }
}
