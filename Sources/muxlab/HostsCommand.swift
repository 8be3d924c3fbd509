import ArgumentParser
import Bench
import Kernel

/// `muxlab hosts WORKLOAD`: checks, before a long run, that every host the workload's cells name answers over
/// ssh without a prompt and runs the driver's own muxlab build.
struct Hosts: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the workload's [hosts]: each answers over ssh (no password prompt) and runs this muxlab build.",
        discussion: """
        For each host the cells name (server_host, load_hosts), runs
          ssh -o BatchMode=yes -o ConnectTimeout=5 [-p PORT] [ssh_options] USER@ADDRESS MUXLAB --version
        and compares the answer with this muxlab's own --version line (release and commit).
        MUXLAB is the host's `muxlab = "/path"`, else this binary's own path.
        Prints one line per host; exit 0 when every host is ready, 1 when one is not (each problem
        names the host and its address), 2 for a workload that does not load.

        EXAMPLES:
          muxlab hosts workloads/multi-host.toml
        """
    )

    @Argument(help: "The workload file whose [hosts] to check.")
    var workload: String

    func run() throws {
        let loaded: Workload
        do {
            loaded = try Workload.load(path: workload)
        } catch let e as WorkloadError {
            writeLine("muxlab hosts: \(e)", fd: 2)
            throw ExitCode(2)
        }
        let hosts = loaded.hostsInUse
        guard !hosts.isEmpty else {
            writeLine("muxlab hosts: \(workload): no cell names a host (server_host, load_hosts): every cell runs on this machine")
            return
        }
        if !Self.check(hosts, command: "muxlab hosts") { throw ExitCode(1) }
    }

    /// One line per host, "ready" or its problem (stderr); true when every host is ready.
    static func check(_ hosts: [RemoteHost], command: String, version: String = BuildInfo.line()) -> Bool {
        var ready = true
        for (host, problem) in HostCheck.problems(hosts, localVersion: version, localExecutable: currentExecutablePath()) {
            if let problem {
                writeLine("\(command): \(problem)", fd: 2)
                ready = false
            } else {
                writeLine("\(command): host \(host.name) (\(host.shown)): ready, \(version)")
            }
        }
        return ready
    }
}
