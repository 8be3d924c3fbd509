#if canImport(Glibc)
import Glibc
#endif
import CShims

/// The network namespaces muxlab creates for `topology = "netns"` cells, as `ip netns add`
/// leaves them: a file under /var/run/netns named `muxlab-<driver pid>-<cell>-s|c`.
/// Such a namespace holds only a veth pair to its twin: traffic in it cannot leave the machine,
/// so `muxlab serve --listen` and `muxlab load --target` accept any address inside one.
public enum NetworkNamespace {
    /// Where iproute2 keeps named namespaces (NETNS_RUN_DIR).
    public static let directory = "/var/run/netns"
    /// The prefix of every namespace muxlab creates.
    public static let prefix = "muxlab-"

    /// The names of the namespaces under `directory` that start with `prefix`, sorted.
    public static func muxlabNamespaces() -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name.hasPrefix(prefix) { names.append(name) }
        }
        return names.sorted()
    }

    /// True when the calling thread runs in a network namespace muxlab created: its
    /// /proc/thread-self/ns/net is the same namespace (device and inode) as one of the
    /// `muxlab-*` files, and not the namespace of pid 1 (the host's, never one of ours).
    public static func currentIsMuxlabCreated() -> Bool {
        guard let current = identity("/proc/thread-self/ns/net") else { return false }
        if identity("/proc/1/ns/net") == current { return false }
        return muxlabNamespaces().contains { identity(directory + "/" + $0) == current }
    }

    /// Runs `body` on a new thread that first joined the namespace `name` (setns CLONE_NEWNET;
    /// the network namespace is per thread, so the caller's own stays as it was). Sockets
    /// `body` opens belong to that namespace. Needs CAP_SYS_ADMIN (root).
    public static func run<T>(in name: String, _ body: () throws -> T) throws -> T {
        let path = directory + "/" + name
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open(\(path))", errno: errno) }
        defer { close(fd) }
        return try withoutActuallyEscaping(body) { body in
            let work = ThreadWork<T> {
                let rc = mux_setns_net(fd)
                guard rc == 0 else { throw SystemError("setns(\(path), CLONE_NEWNET)", errno: -rc) }
                return try body()
            }
            var thread = pthread_t()
            let arg = Unmanaged.passRetained(work).toOpaque()
            let rc = pthread_create(&thread, nil, { arg in
                let work = Unmanaged<AnyObject>.fromOpaque(arg!).takeRetainedValue() as! Runnable
                work.runOnce()
                return nil
            }, arg)
            guard rc == 0 else {
                Unmanaged<ThreadWork<T>>.fromOpaque(arg).release()
                throw SystemError("pthread_create", errno: rc)
            }
            pthread_join(thread, nil)
            return try work.result!.get()
        }
    }

    /// (device, inode) of a namespace file; nil when it cannot be read.
    static func identity(_ path: String) -> [UInt64]? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return [UInt64(info.st_dev), UInt64(info.st_ino)]
    }
}

/// Something a thread started by `NetworkNamespace.run` executes.
private protocol Runnable: AnyObject {
    func runOnce()
}

/// A body and, once run, its result: handed to the thread and read back after the join.
private final class ThreadWork<T>: Runnable {
    let body: () throws -> T
    var result: Result<T, Error>?

    init(_ body: @escaping () throws -> T) { self.body = body }

    func runOnce() { result = Result { try body() } }
}
