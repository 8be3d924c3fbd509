import Foundation
import Testing
@testable import Bench

/// A fresh directory under /tmp for one test's files, removed when the value goes away.
final class ScratchDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "muxlab-bench-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Writes `text` to `name` (which may contain subdirectories) and returns its full path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let file = path + "/" + name
        try FileManager.default.createDirectory(
            atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: file, atomically: false, encoding: .utf8)
        return file
    }

    func read(_ name: String) throws -> String {
        try String(contentsOfFile: path + "/" + name, encoding: .utf8)
    }
}

/// A workload given as text: loaded from a scratch file, or the error that refuses it.
enum WorkloadText {
    static func load(_ text: String) throws -> Workload {
        let scratch = try ScratchDirectory()
        return try Workload.load(path: try scratch.write("main.toml", text))
    }

    /// The WorkloadError's text; records an Issue (and returns "") when the text loads.
    static func error(_ text: String) throws -> String {
        do {
            let w = try load(text)
            Issue.record("expected a WorkloadError, got \(w.cells().count) cells")
            return ""
        } catch let e as WorkloadError {
            return e.description
        }
    }
}
