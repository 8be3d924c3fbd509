import Foundation
import Kernel
import Load
import TOMLKit

// MARK: - Helpers

func checkKeys(_ table: TOMLTable, allowed: [String], at: String) throws {
    for key in table.keys.sorted() where !allowed.contains(key) {
        throw WorkloadError("\(at): unknown key \"\(key)\": allowed keys are " + allowed.joined(separator: ", "))
    }
}

/// Where TOMLKit cannot be handed `text`, found before it is: TOMLKit passes C
/// strings, so a NUL would silently drop the rest of the file, and a `\u0000`
/// escape the rest of a string or key; and toml++ 3.4
/// fails an assertion, aborting the process, on a table header whose name starts
/// with anything but a key character or a quote (`[[` then a line break, `[=`;
/// marzer/tomlplusplus#301) and on a `}` or a Unicode line separator where an
/// array expects a value (`[}`). Each is a syntax error anyway. `statement` is the
/// scalar offset where the statement holding it begins, so what comes before can
/// still be parsed for an earlier error.
func unparsableSpot(in text: String) -> (statement: Int, line: Int, column: Int, what: String)? {
    var scan = TOMLPrescan(text)
    return scan.run()
}

/// The scan behind `unparsableSpot`: a cursor over the text's scalars that skips strings and comments and
/// knows which statement it is in and which brackets are open.
struct TOMLPrescan {
    typealias Spot = (statement: Int, line: Int, column: Int, what: String)
    let scalars: [Unicode.Scalar]
    /// toml++ would see nothing past a NUL.
    let end: Int
    /// TOMLKit reads strings as C strings: a \u0000 would cut the string short.
    var escapedNUL: Int?
    static let escapedNULWhat = "a \\u0000 (NUL) escape in a string: it would cut the string short"

    init(_ text: String) {
        scalars = Array(text.unicodeScalars)
        end = scalars.firstIndex(of: "\0") ?? scalars.count
    }

    func lineStart(_ offset: Int) -> Int { scalars[..<offset].lastIndex(of: "\n").map { $0 + 1 } ?? 0 }

    func spot(_ statement: Int, _ offset: Int, _ what: String) -> Spot {
        let line = 1 + scalars[..<offset].reduce(0) { $1 == "\n" ? $0 + 1 : $0 }
        return (statement, line, offset - lineStart(offset) + 1, what)
    }

    func isBlank(_ i: Int) -> Bool { i < end && (scalars[i] == " " || scalars[i] == "\t") }

    func isEscapedNUL(_ j: Int) -> Bool {
        let digits = j + 1 < end && scalars[j + 1] == "u" ? 4 : j + 1 < end && scalars[j + 1] == "U" ? 8 : 0
        return digits > 0 && j + 1 + digits < end && scalars[(j + 2)...(j + 1 + digits)].allSatisfy { $0 == "0" }
    }

    func shown(_ scalar: Unicode.Scalar) -> String {
        scalar == "\n" ? "a line break" : scalar.value > 0x20 && scalar.value < 0x7F ? "'\(scalar)'" : String(format: "U+%04X", scalar.value)
    }

    /// Index just past the string opening at `i`, or where a line break or the end cuts it short.
    mutating func skipString(_ i: Int) -> Int {
        let quote = scalars[i]
        if i + 2 < end && scalars[i + 1] == quote && scalars[i + 2] == quote { return skipMultiline(i, quote) }
        var j = i + 1
        while j < end && scalars[j] != "\n" {
            if quote == "\"" && scalars[j] == "\\" {
                if escapedNUL == nil && isEscapedNUL(j) { escapedNUL = j }
                j += 2
                continue
            }
            if scalars[j] == quote { return j + 1 }
            j += 1
        }
        return min(j, end)
    }

    /// A string opened with three quotes at `i`.
    mutating func skipMultiline(_ i: Int, _ quote: Unicode.Scalar) -> Int {
        var j = i + 3
        while j < end {
            if quote == "\"" && scalars[j] == "\\" {
                if escapedNUL == nil && isEscapedNUL(j) { escapedNUL = j }
                j += 2
                continue
            }
            if j + 2 < end && scalars[j] == quote && scalars[j + 1] == quote && scalars[j + 2] == quote {
                j += 3
                for _ in 0..<2 where j < end && scalars[j] == quote { j += 1 }  // """a"""" ends in a quote
                return j
            }
            j += 1
        }
        return end
    }

    /// A table header opening at `i` (`[name]` or `[[name]]` at a statement's start): the index past its
    /// line's name, or the spot where its name starts with what no key can.
    mutating func skipTableHeader(_ i: Int) -> (next: Int, bad: Spot?) {
        var j = i + 1
        while isBlank(j) { j += 1 }
        if j == i + 1 && j < end && scalars[j] == "[" {
            j += 1
            while isBlank(j) { j += 1 }
        }
        if j < end {
            let first = scalars[j]
            let isKeyStart = ("0"..."9").contains(first) || ("a"..."z").contains(first) || ("A"..."Z").contains(first)
                || ["_", "-", "\"", "'", "]"].contains(first)
            if !isKeyStart {
                return (j, spot(i, j, "a table name must start with a letter, digit, _, - or a quote, not \(shown(first))"))
            }
        }
        // The rest of the header's line is its name, not a value.
        while j < end && scalars[j] != "\n" && scalars[j] != "#" {
            j = scalars[j] == "\"" || scalars[j] == "'" ? skipString(j) : j + 1
        }
        return (j, nil)
    }

    mutating func run() -> Spot? {
        var i = scalars.first == "\u{FEFF}" ? 1 : 0
        var open: [Unicode.Scalar] = []  // arrays and inline tables open in a value
        var statementStart = true
        var statement = 0  // where the statement being read began
        while i < end {
            if let at = escapedNUL { return spot(statement, at, Self.escapedNULWhat) }
            if statementStart && !["\n", " ", "\t", "\r", "#"].contains(scalars[i]) { statement = i }
            let c = scalars[i]
            switch c {
            case "\n":
                if open.isEmpty { statementStart = true }
                i += 1
                continue
            case " ", "\t", "\r":
                i += 1
                continue
            case "#":
                while i < end && scalars[i] != "\n" { i += 1 }
                continue
            case "\"", "'":
                i = skipString(i)
            case "[" where open.isEmpty && statementStart:
                let (next, bad) = skipTableHeader(i)
                if let bad { return bad }
                i = next
            case "[", "{":
                open.append(c)
                i += 1
            case "}" where open.last == "[":
                return spot(statement, i, "unexpected '}' in an array")
            case "\u{2028}", "\u{2029}", "\u{85}":
                return spot(statement, i, "unexpected \(shown(c)): a line separator outside a string")
            case "]", "}":
                _ = open.popLast()
                i += 1
            default:
                i += 1
            }
            statementStart = false
        }
        if let at = escapedNUL { return spot(statement, at, Self.escapedNULWhat) }
        guard end < scalars.count else { return nil }
        return spot(statementStart ? lineStart(end) : statement, end, "a NUL character (U+0000) is not allowed in TOML text")
    }
}

/// Line and column (in characters) of the first byte that is not UTF-8.
func firstInvalidUTF8(in bytes: [UInt8]) -> (line: Int, column: Int)? {
    var parser = Unicode.UTF8.ForwardParser()
    var input = bytes.makeIterator()
    var (line, column) = (1, 1)
    while true {
        switch parser.parseScalar(from: &input) {
        case .valid(let encoded):
            if encoded.count == 1 && encoded.first == 0x0A { (line, column) = (line + 1, 1) } else { column += 1 }
        case .error: return (line, column)
        case .emptyInput: return nil
        }
    }
}

func isClaimID(_ text: String) -> Bool {
    let scalars = Array(text.unicodeScalars)
    guard scalars.count >= 2, ("A"..."Z").contains(scalars[0]) else { return false }
    return scalars.dropFirst().allSatisfy { ("0"..."9").contains($0) }
}

/// The file's identity for cycle detection: absolute, symlinks resolved.
func canonicalPath(_ path: String) -> String {
    URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
}

/// "an integer", "a string", ... for type errors.
func typeName(_ value: TOMLValueConvertible) -> String {
    switch value.type {
    case .int: return "an integer"
    case .double: return "a floating-point number"
    case .string: return "a string"
    case .bool: return "a boolean"
    case .array: return "an array"
    case .table: return "a table"
    case .date: return "a date"
    case .time: return "a time"
    case .dateTime: return "a date-time"
    }
}

/// A value as it would be written in the file, for messages.
func render(_ value: TOMLValueConvertible) -> String {
    switch value.type {
    case .string:
        let text = value.string ?? ""
        return "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    case .int: return String(value.int ?? 0)
    case .double:
        let number = value.double ?? 0
        return number == number.rounded() && abs(number) < 1e15 ? String(format: "%.1f", number) : "\(number)"
    case .bool: return String(value.bool ?? false)
    case .array: return "[" + (value.array.map { $0.map(render).joined(separator: ", ") } ?? "") + "]"
    case .table: return "{...}"
    default: return value.debugDescription
    }
}
