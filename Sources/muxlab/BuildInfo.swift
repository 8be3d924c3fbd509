import Bench
import Foundation
import Kernel

/// What `muxlab --version` prints: the release and the commit this binary was built from (`BuildStamp`).
/// Where the source tree the binary was built from is still here and its HEAD has moved since the file
/// was written (a `swift build` without make), both are named rather than one guessed.
enum BuildInfo {
    static let release = "0.9.0"

    /// Read only for --version: the git check starts a process.
    static func line() -> String {
        let exe = currentExecutablePath()
        guard let stamp = BuildStamp.read(executable: exe) else {
            return "muxlab \(release) (commit unknown: no muxlab.commit beside \(exe); `make build` writes it)"
        }
        let commit = stamp.commit
        if let head = sourceHead(), head != commit {
            return "muxlab \(release) (muxlab.commit says \(stamp.text), but its source tree is now at \(head): rebuild with make build)"
        }
        return "muxlab \(release) (commit \(stamp.text))"
    }

    /// `git rev-parse --short HEAD` of the tree this file was compiled from, when it is still on this host.
    static func sourceHead() -> String? {
        let root = URL(fileURLWithPath: "\(#filePath)").deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        guard FileManager.default.fileExists(atPath: root.path + "/.git"),
              let git = Manifest.runTool(["git", "-C", root.path, "rev-parse", "--short", "HEAD"], timeout: 5), git.status == 0 else { return nil }
        let head = git.output.trimmingCharacters(in: .whitespacesAndNewlines)
        return head.isEmpty ? nil : head
    }
}
