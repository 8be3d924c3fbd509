import ArgumentParser
import Bench
import Kernel

/// `muxlab agent`: what the driver runs on another host over ssh (`muxlab bench` with server_host or
/// load_hosts). It speaks muxlab's control messages on stdin and stdout, one JSON object a line.
struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run muxlab's children on this host for a driver elsewhere (started by muxlab bench over ssh).",
        discussion: """
        Reads control messages on stdin and answers on stdout, one JSON object a line: it says hello
        with this build's --version line, starts `muxlab serve` and `muxlab load` here when told
        (spawn), passes their own control lines through (relay), reads their counters and CPU at each
        edge, and says when one ends (exited). It ends every child it started when told to stop, when
        stdin closes (the ssh session ended) and on SIGTERM, SIGHUP or SIGINT.
        Not meant to be typed; the driver runs it as
          ssh -o BatchMode=yes ... USER@HOST /path/to/muxlab agent
        """
    )

    func run() throws {
        let agent: Agent
        do {
            agent = try Agent(version: BuildInfo.line(), executable: currentExecutablePath())
        } catch {
            writeLine("muxlab agent: \(error)", fd: 2)
            throw ExitCode(1)
        }
        agent.run()
    }
}
