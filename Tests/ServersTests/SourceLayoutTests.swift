import Foundation
import Kernel
import TestSupport
import Testing

/// Issue 15's layout, held: the reactor along its seams, each file small enough to read whole.
@Suite("Source layout: files a newcomer can read whole")
struct SourceLayoutTests {
    static let limit = 500

    /// Every Swift file under Sources/, relative to the package root, with its line count.
    func sources() throws -> [(path: String, lines: Int)] {
        let root = TestSupport.packageRoot
        guard let walker = FileManager.default.enumerator(atPath: root + "/Sources") else {
            throw ValueError("cannot list \(root)/Sources")
        }
        var out: [(String, Int)] = []
        for case let path as String in walker where path.hasSuffix(".swift") {
            let text = try String(contentsOfFile: root + "/Sources/" + path, encoding: .utf8)
            out.append(("Sources/" + path, text.split(separator: "\n", omittingEmptySubsequences: false).count))
        }
        return out
    }

    @Test("no Swift file under Sources/ is over 500 lines")
    func filesAreShort() throws {
        let files = try sources()
        #expect(files.count > 50, "found only \(files.count) Swift files")
        let long = files.filter { $0.lines > SourceLayoutTests.limit }.map { "\($0.path): \($0.lines) lines" }
        #expect(long.isEmpty, "over \(SourceLayoutTests.limit) lines: \(long)")
    }

    @Test("the reactor's seams each have their own file under Sources/Servers")
    func reactorSeams() throws {
        let names = Set(try sources().map { ($0.path as NSString).lastPathComponent })
        for file in ["Reactor.swift", "ConnectionState.swift", "EchoFraming.swift", "HTTPFraming.swift", "ReactorSplice.swift",
                     "ReactorHandoff.swift", "ReactorShedding.swift", "ReactorIdleSweep.swift", "ReactorStats.swift", "ReactorErrors.swift"] {
            #expect(names.contains(file), "no \(file)")
        }
    }
}
