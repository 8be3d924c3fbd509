import Foundation
import Kernel
import Testing
@testable import Bench

/// The `topology` key, its column, and the names of the namespaces a netns cell gets.
/// The namespaces themselves are made and removed for real in EndToEndTests/NetnsTests.
@Suite("topology key: loopback or netns")
struct TopologyTests {
    func load(_ text: String) throws -> Workload { try WorkloadText.load(text) }
    func error(_ text: String) throws -> String { try WorkloadText.error(text) }

    @Test("loopback is the default; netns and loopback side by side label the cells and fill the column")
    func parses() throws {
        #expect(try load("[[experiment]]\nid = \"t\"").cells()[0].topology == .loopback)
        let cells = try load("""
            [[experiment]]
            id = "t"
            [experiment.matrix]
            io = ["poll", "epoll-et"]
            topology = ["loopback", "netns"]
            """).cells()
        #expect(cells.map(\.topology) == [.loopback, .netns, .loopback, .netns])
        #expect(cells[1].label == "io=poll topology=netns")
        #expect(ResultRow(cell: cells[1])[column: "topology"] == "netns")
        #expect(ResultRow(cell: cells[0])[column: "topology"] == "loopback")
    }

    @Test("a bad value names the key, the value and what is allowed")
    func badValue() throws {
        let message = try error("[[experiment]]\nid = \"t\"\n[experiment.base]\ntopology = \"veth\"")
        #expect(message.contains("topology = \"veth\""), "\(message)")
        #expect(message.contains("one of loopback, netns"), "\(message)")
        let typed = try error("[[experiment]]\nid = \"t\"\n[experiment.base]\ntopology = 1")
        #expect(typed.contains("topology = 1") && typed.contains("loopback, netns"), "\(typed)")
    }

    @Test("the driver sets --listen and never passes --allow-non-loopback: server_args and load_args may not")
    func reservedFlags() throws {
        let listen = try error("[[experiment]]\nid = \"t\"\n[experiment.base]\nserver_args = [\"--listen\", \"10.0.0.1\"]")
        #expect(listen.contains("--listen is set by the driver from topology"), "\(listen)")
        let serve = try error("[[experiment]]\nid = \"t\"\n[experiment.base]\nserver_args = [\"--allow-non-loopback\"]")
        #expect(serve.contains("--allow-non-loopback is set by the driver from topology"), "\(serve)")
        let load = try error("[[experiment]]\nid = \"t\"\n[experiment.base]\nload_args = [\"--allow-non-loopback\"]")
        #expect(load.contains("--allow-non-loopback is set by the driver from topology"), "\(load)")
    }

    @Test("a netns cell cannot hold more connections than one source address has ports")
    func netnsConnections() throws {
        let message = try error("""
            [[experiment]]
            id = "t"
            [experiment.base]
            topology = "netns"
            connections = 30000
            active = 1
            """)
        #expect(message.contains("topology = \"netns\" with connections = 30000"), "\(message)")
        #expect(message.contains("topology = \"loopback\""), "\(message)")
    }

    @Test("preflight says what a netns cell needs when the machine cannot make namespaces")
    func preflight() {
        var cell = Cell(experiment: "x", serverCPUs: CPUList([1]), clientCPUs: CPUList([0]))
        #expect(Preflight.problems([cell], online: CPUList([0, 1]), numaNodes: 1, netnsUnavailable: "needs root").isEmpty)
        cell.topology = .netns
        #expect(Preflight.problems([cell, cell], online: CPUList([0, 1]), numaNodes: 1, netnsUnavailable: "needs root")
            == ["experiment \"x\": topology = \"netns\" needs root"])
        #expect(Preflight.problems([cell], online: CPUList([0, 1]), numaNodes: 1, netnsUnavailable: nil).isEmpty)
    }

    @Test("namespace names carry the driver pid and the cell; the stale sweep reads the pid back")
    func names() {
        let (server, client) = CellNetwork.names(driver: 4242, cell: 7)
        #expect(server == "muxlab-4242-7-s" && client == "muxlab-4242-7-c")
        #expect(BenchRunner.driverPID(ofNamespace: server) == 4242)
        #expect(BenchRunner.driverPID(ofNamespace: "muxlab-x-1-s") == nil)
        #expect(BenchRunner.driverPID(ofNamespace: "other-4242-1-s") == nil)
        #expect(BenchRunner.driverPID(ofNamespace: "muxlab-4242") == nil)
    }
}
