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

    /// Each function's or initialiser's length in lines, from its declaration to the brace that closes it.
    /// Braces are counted outside string literals and comments (muxlab's templates hold "{port}"); a
    /// declaration without a body (a protocol requirement) has none.
    static func functionLengths(_ text: String) -> [(line: Int, lines: Int, name: String)] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        /// The line's net braces, skipping "..." strings and // comments; multi-line """ strings toggle `inBlock`.
        func braces(_ line: String, _ inBlock: inout Bool) -> Int {
            var net = 0, inString = false, escaped = false
            let chars = Array(line)
            var i = 0
            while i < chars.count {
                let c = chars[i]
                if i + 2 < chars.count, c == "\"", chars[i + 1] == "\"", chars[i + 2] == "\"" { inBlock.toggle(); i += 3; continue }
                if inBlock { i += 1; continue }
                if inString {
                    if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inString = false }
                } else if c == "\"" {
                    inString = true
                } else if c == "/", i + 1 < chars.count, chars[i + 1] == "/" {
                    break
                } else if c == "{" { net += 1 } else if c == "}" { net -= 1 }
                i += 1
            }
            return net
        }
        var found: [(Int, Int, String)] = []
        var inBlock = false
        var open: [(start: Int, depth: Int, name: String)] = []
        var depth = 0
        for (n, line) in lines.enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            let declares = !inBlock && (trimmed.range(of: #"^(@\w+(\(.*\))? )*((public|private|fileprivate|internal|static|override|mutating|final|convenience|required|@inline\(__always\)) )*(func |init[(?<])"#, options: .regularExpression) != nil)
            let before = depth
            depth += braces(line, &inBlock)
            if declares && depth > before { open.append((n, before, trimmed)) }
            while let last = open.last, depth <= last.depth {
                found.append((last.start + 1, n - last.start + 1, String(last.name.prefix(70))))
                open.removeLast()
            }
        }
        return found
    }

    @Test("no function under Sources/ is over 80 lines")
    func functionsAreShort() throws {
        let root = TestSupport.packageRoot
        var all: [(path: String, line: Int, lines: Int, name: String)] = []
        for file in try sources() {
            let text = try String(contentsOfFile: root + "/" + file.path, encoding: .utf8)
            all += Self.functionLengths(text).map { (file.path, $0.line, $0.lines, $0.name) }
        }
        #expect(all.count > 500, "found only \(all.count) functions: the scan is broken")
        let long = all.filter { $0.lines > 80 }.map { "\($0.path):\($0.line) \($0.name): \($0.lines) lines" }
        #expect(long.isEmpty, "over 80 lines: \(long)")
    }

    @Test("the length scan counts a body's lines and skips braces in strings and comments")
    func functionScan() {
        let text = """
        func a() {
            let s = "{port} }}"  // }
            if true { print(s) }
        }
        protocol P { func b() }
        init(x: Int) {
        }
        """
        let found = Self.functionLengths(text)
        #expect(found.map(\.lines) == [4, 2], "\(found)")
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
