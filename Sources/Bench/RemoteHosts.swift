import Foundation
import Kernel
import TOMLKit

/// A host a workload names in `[hosts.NAME]`: the user's permission to listen on and send to that host's
/// address, and only that. The driver reaches it with OpenSSH, never with a password prompt.
///
///     [hosts.a]
///     ssh = "root@10.77.0.2"              # [user@]address[:port]; an IPv6 address in brackets: "[fd00::2]:2222"
///     ssh_options = ["-i", "/path/key"]   # passed to ssh as they are (optional)
///     muxlab = "/usr/local/bin/muxlab"    # optional; default: the driver's own path
public struct RemoteHost: Equatable, Sendable {
    public let name: String
    public let user: String?
    public let address: String
    public let port: Int?
    public let sshOptions: [String]
    /// The muxlab to run there; nil: the driver's own path.
    public let muxlab: String?

    /// "root@10.77.0.2:2222", as the workload wrote it (for messages).
    public var shown: String {
        let host = address.contains(":") ? "[\(address)]" : address
        return (user.map { $0 + "@" } ?? "") + host + (port.map { ":\($0)" } ?? "")
    }

    /// What ssh is given as the host: "user@address", or the address alone.
    public var destination: String { (user.map { $0 + "@" } ?? "") + address }

    public init(name: String, ssh: String, sshOptions: [String] = [], muxlab: String? = nil) throws {
        self.name = name
        self.sshOptions = sshOptions
        self.muxlab = muxlab
        let at = "[hosts.\(name)]: ssh = \"\(ssh)\""
        var rest = Substring(ssh)
        if let sign = rest.lastIndex(of: "@") {
            let user = rest[..<sign]
            guard !user.isEmpty, user.allSatisfy({ $0.isLetter || $0.isNumber || "._-".contains($0) }) else {
                throw WorkloadError("\(at): the user before @ must be a login name ([A-Za-z0-9._-]+)")
            }
            self.user = String(user)
            rest = rest[rest.index(after: sign)...]
        } else {
            self.user = nil
        }
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw WorkloadError("\(at): an IPv6 address in [ ] lacks its ]") }
            address = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw WorkloadError("\(at): after ] only :PORT may follow") }
                portText = after.dropFirst()
            }
        } else {
            let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else {
                throw WorkloadError("\(at): an IPv6 address goes in brackets, like \"root@[fd00::2]:22\"")
            }
            address = String(parts[0])
            if parts.count == 2 { portText = parts[1] }
        }
        guard !address.isEmpty, address.allSatisfy({ $0.isLetter || $0.isNumber || ".-:_".contains($0) }) else {
            throw WorkloadError("\(at): needs an address or host name, like \"root@10.77.0.2\" or \"bench-2:2222\"")
        }
        if let portText {
            guard let port = Int(portText), (1...65535).contains(port) else {
                throw WorkloadError("\(at): port \"\(portText)\" must be a number in 1-65535")
            }
            self.port = port
        } else {
            port = nil
        }
    }

    /// `[hosts]` of a workload file: a table of tables, each with `ssh` and optionally `ssh_options` and `muxlab`.
    static func parseAll(_ value: TOMLValueConvertible, at file: String) throws -> [RemoteHost] {
        guard let table = value.table else {
            throw WorkloadError("\(file): hosts = \(render(value)): must be tables, one per host: [hosts.a] with ssh = \"root@10.77.0.2\"")
        }
        return try table.keys.sorted().map { name in
            let at = "\(file): [hosts.\(name)]"
            guard !name.isEmpty, name.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) else {
                throw WorkloadError("\(at): a host name must match [a-z0-9-]+ (lowercase letters, digits, dashes)")
            }
            guard let entry = table[name]?.table else {
                throw WorkloadError("\(at): must be a table with ssh = \"user@address\"")
            }
            try checkKeys(entry, allowed: ["ssh", "ssh_options", "muxlab"], at: at)
            guard let ssh = entry["ssh"] else { throw WorkloadError("\(at): missing ssh = \"user@address[:port]\"") }
            guard let sshText = ssh.string else {
                throw WorkloadError("\(at): ssh = \(render(ssh)): must be a string \"user@address[:port]\", not \(typeName(ssh))")
            }
            var options: [String] = []
            if let value = entry["ssh_options"] {
                guard let list = value.array, list.allSatisfy({ $0.type == .string }) else {
                    throw WorkloadError("\(at): ssh_options = \(render(value)): must be an array of strings, like [\"-i\", \"/root/.ssh/bench\"]")
                }
                options = list.map { $0.string! }
            }
            var muxlab: String?
            if let value = entry["muxlab"] {
                guard let path = value.string, path.hasPrefix("/") else {
                    throw WorkloadError("\(at): muxlab = \(render(value)): must be an absolute path on that host, like \"/usr/local/bin/muxlab\"")
                }
                muxlab = path
            }
            do {
                return try RemoteHost(name: name, ssh: sshText, sshOptions: options, muxlab: muxlab)
            } catch let error as WorkloadError {
                throw WorkloadError("\(file): \(error)")
            }
        }
    }

    /// The ssh command line that runs `remote` there: no password prompt (BatchMode) and a bounded connect.
    /// With `controlDirectory`, a session over the connection the driver holds there (`AgentSession`'s
    /// `ssh -M -N`, its control socket in that directory); it never becomes a master itself, which would
    /// outlive the command. Without it, one connection for this command only.
    public func sshCommand(_ remote: [String], controlDirectory: String? = nil, connectTimeout: Int = 5) -> [String] {
        var command = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=\(connectTimeout)", "-o", "ControlMaster=no"]
        command += ["-o", "ControlPath=" + (controlDirectory.map { "\($0)/%C" } ?? "none")]
        if let port { command += ["-p", String(port)] }
        command += sshOptions
        command.append(destination)
        // ssh hands the remote shell one string: each word quoted so paths with spaces stay one word.
        command.append(remote.map(shellQuoted).joined(separator: " "))
        return command
    }
}

/// 'word' for a POSIX shell, single quotes inside closed and reopened.
func shellQuoted(_ word: String) -> String {
    if !word.isEmpty, word.allSatisfy({ $0.isLetter || $0.isNumber || "/._-=:,@%+".contains($0) }) { return word }
    return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// What the driver learns of a host before any load starts: it answers over ssh with the key given, and
/// its muxlab is the driver's own build. One line per host that fails, naming the host and its address.
public enum HostCheck {
    /// `localVersion`: the driver's own `muxlab --version` line; `localExecutable`: the muxlab run on a host
    /// whose `[hosts]` entry names none. Returns, per host in order, nil (ready) or the problem.
    public static func problems(_ hosts: [RemoteHost], localVersion: String, localExecutable: String,
                                timeout: Double = 20) -> [(host: RemoteHost, problem: String?)] {
        hosts.map { host in
            let muxlab = host.muxlab ?? localExecutable
            let command = host.sshCommand([muxlab, "--version"])
            let at = "host \(host.name) (\(host.shown))"
            guard let result = Manifest.runTool(command, timeout: timeout, mergeErrors: true) else {
                return (host, "\(at): no answer over ssh within \(formatSeconds(timeout))")
            }
            let lines = result.output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
            switch result.status {
            case 0:
                let version = lines.last { $0.hasPrefix("muxlab ") } ?? ""
                if version == localVersion { return (host, nil) }
                return (host, "\(at): runs \(version.isEmpty ? "no muxlab --version line" : version), the driver is \(localVersion): install the driver's build there (make install PREFIX=...)")
            case 255:
                // ssh's own failure: unreachable, refused, a key the host does not accept.
                return (host, "\(at): ssh failed: \(lines.last ?? "exit 255")")
            case 126, 127:
                return (host, "\(at): cannot run \(muxlab) there (\(lines.last ?? "not found")): install muxlab there (make install PREFIX=...) or set muxlab = \"/path\" in [hosts.\(host.name)]")
            default:
                return (host, "\(at): \(muxlab) --version exited \(result.status): \(lines.last ?? "")")
            }
        }
    }
}

/// A cell's server_host and load_hosts must be hosts defined by now; a load targets only its cell's server host.
func checkHosts(_ cell: Cell, hosts: [String: RemoteHost], at: String) throws {
    let place = cell.label.isEmpty ? at : "\(at): cell \(cell.label)"
    let defined = hosts.keys.sorted()
    let loadList = "load_hosts = [" + cell.loadHosts.map { "\"\($0)\"" }.joined(separator: ", ") + "]"
    func undefined(_ name: String) -> String {
        "\"\(name)\" is not in [hosts] (" + (defined.isEmpty ? "this workload defines no hosts: add [hosts.\(name)] with ssh = \"user@address\"" : "defined: \(defined.joined(separator: ", "))") + ")"
    }
    if let name = cell.serverHost, hosts[name] == nil {
        throw WorkloadError("\(place): server_host = \"\(name)\": " + undefined(name))
    }
    if let name = cell.loadHosts.first(where: { hosts[$0] == nil }) {
        throw WorkloadError("\(place): \(loadList): " + undefined(name))
    }
    if let twice = cell.loadHosts.first(where: { name in cell.loadHosts.filter { $0 == name }.count > 1 }) {
        throw WorkloadError("\(place): \(loadList): names \"\(twice)\" twice")
    }
    if cell.loadHosts.count > cell.connections {
        throw WorkloadError("\(place): \(loadList): \(cell.loadHosts.count) hosts for connections = \(cell.connections): each needs at least one connection")
    }
    if cell.serverHost == nil && !cell.loadHosts.isEmpty {
        throw WorkloadError("\(place): \(loadList): needs server_host: a load targets only its cell's server host, and a server on this machine listens on loopback only")
    }
    if cell.remote && cell.load == .wrk {
        throw WorkloadError("\(place): load = \"wrk\": runs on this machine only; a cell with server_host or load_hosts uses load = \"muxlab\"")
    }
    if cell.serverHost != nil && !cell.serverCommand.isEmpty {
        throw WorkloadError("\(place): server_command: runs on this machine only in this build; a cell with server_host runs muxlab serve there")
    }
    if cell.remote && cell.topology == .netns {
        throw WorkloadError("\(place): topology = \"netns\": is for cells on this machine; a cell with server_host or load_hosts runs across the hosts' own network")
    }
}

/// A file's `[hosts]` added to those loaded so far; a name defined twice must be defined alike.
func mergeHosts(_ value: TOMLValueConvertible, at path: String, into hosts: inout [String: RemoteHost]) throws {
    for host in try RemoteHost.parseAll(value, at: path) {
        if let other = hosts[host.name], other != host {
            throw WorkloadError("\(path): [hosts.\(host.name)] differs from the host of that name an included file defines (\(other.shown)): give one of them another name")
        }
        hosts[host.name] = host
    }
}
