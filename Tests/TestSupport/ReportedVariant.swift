import Vocabulary

/// The variant `muxlab serve` reports in its ready message for these settings, for rows built in code:
/// the flags applied and the server's choices made as it makes them (`ServerVariant.inForce`), with the
/// thread stack of a typical host (glibc's 8 MiB for `--thread-stack default`, muxlab's 256 KiB without
/// the flag) and a descriptor limit of 1,048,576 unless `--fd-limit` says otherwise. A flag the vocabulary
/// refuses stops the test: a fixture's typo must not pass as a default.
public func reportedVariant(model: String, io: String, protocol wire: String = "echo", reactors: Int? = nil,
                            workers: Int? = nil, serverArgs: [String]) -> ServerVariant {
    let model = ServerModel(rawValue: model) ?? .reactor
    var variant = ServerVariant(model: model, io: IOMode(rawValue: io), wire: WireProtocol(rawValue: wire) ?? .echo)
    variant.reactors = reactors ?? 1
    variant.workers = workers ?? 0
    do {
        try variant.apply(flags: serverArgs)
    } catch {
        fatalError("fixture server_args \(serverArgs): \(error)")
    }
    let stack = variant.threadStack.map { $0 == 0 ? 8 << 20 : $0 } ?? 256 << 10
    return variant.inForce(threadStack: stack, fdLimit: variant.fdLimit ?? 1 << 20)
}
