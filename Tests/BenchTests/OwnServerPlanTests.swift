import Testing
@testable import Bench
import Kernel

/// `muxlab bench --server-command`: the command split as a shell splits plain words, and its port.
@Suite("Own server plan: the one-command workload")
struct OwnServerPlanTests {
    @Test("words split like a shell's; {port} must be in the command unless the --server-config file holds it")
    func words() throws {
        #expect(try OwnServerPlan.words("python3 'my app.py' --port {port}") == ["python3", "my app.py", "--port", "{port}"])
        #expect(throws: ValueError.self) { try OwnServerPlan.words("nginx -c {workdir}/nginx.conf") }
        #expect(try OwnServerPlan.words("nginx -c {workdir}/nginx.conf", portInConfig: true) == ["nginx", "-c", "{workdir}/nginx.conf"])
        #expect(throws: ValueError.self) { try OwnServerPlan.words("python3 'unclosed --port {port}") }
    }

    @Test("the workload it writes names the config file, absolute, as server_config")
    func configInWorkload() throws {
        var plan = OwnServerPlan(command: ["nginx", "-p", "{workdir}", "-c", "{workdir}/nginx.conf"])
        plan.serverConfig = "workloads/peers/nginx.conf"
        let text = plan.toml()
        #expect(text.contains("server_config = \"/") && text.contains("/workloads/peers/nginx.conf\""), "\(text)")
    }
}
