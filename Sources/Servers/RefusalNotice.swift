import Kernel

/// The one stderr line a server writes when it first refuses a connection (descriptor table full,
/// a thread or process it could not start): later refusals are only counted, so a refusing server
/// does not flood its log. One per accepting loop or thread.
struct RefusalNotice {
    private var said = false

    mutating func say(_ why: @autoclosure () -> String) {
        guard !said else { return }
        said = true
        writeLine("muxlab serve: refusing connections: \(why())", fd: 2)
    }
}
