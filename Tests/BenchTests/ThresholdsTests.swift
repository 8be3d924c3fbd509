import Foundation
import Testing
@testable import Bench

/// The numbers of a threshold sentence that follow a comparison: ">= 1,000", "< 0.1", "±10 %", "+25 %".
private func comparedNumbers(_ sentence: String) -> [String] {
    let pattern = try! NSRegularExpression(pattern: "(>=|<=|>|<|±|\\+)\\s?([0-9]{1,3}(,[0-9]{3})*(\\.[0-9]+)?( %|x)?)")
    let range = NSRange(sentence.startIndex..., in: sentence)
    return pattern.matches(in: sentence, range: range).compactMap { match in
        Range(match.range(at: 2), in: sentence).map { String(sentence[$0]) }
    }
}

@Suite("Thresholds: every number a rule decides by is data, written once")
struct ThresholdsTests {
    @Test("every compared number in a rule's sentence is one of its thresholds, and every threshold appears in it")
    func sentencesFromData() {
        for rule in ClaimRule.all {
            let shown = Set(rule.thresholds.map(\.shown))
            for number in comparedNumbers(rule.threshold) where number != "0" {
                #expect(shown.contains(number), "\(rule.claim): \"\(number)\" in its sentence is not one of its thresholds \(shown.sorted())")
            }
            for threshold in rule.thresholds {
                #expect(rule.threshold.contains(threshold.shown), "\(rule.claim): threshold \(threshold.text) does not appear in its sentence")
                #expect(!threshold.figure.isEmpty && !threshold.meaning.isEmpty, "\(rule.claim): a threshold without figure or meaning")
            }
        }
    }

    @Test("a bound holds only when every run meets it; a margin is a two-sided test")
    func holds() {
        let busy = Threshold("calls", .atLeast, 1000, meaning: "supported")
        #expect(busy.holds(Measured(metric: "calls", samples: [1000, 5000])))
        #expect(!busy.holds(Measured(metric: "calls", samples: [999, 5000])), "one run short of the bound fails it")
        #expect(!busy.holds(nil), "an empty figure meets no bound")
        let quiet = Threshold("calls", .below, 50, meaning: "supported")
        #expect(quiet.holds(49.9) && !quiet.holds(50))
        let flat = Threshold("change", .within, 0.1, unit: .percent, meaning: "supported")
        #expect(flat.holds(min: -0.1, max: 0.05) && !flat.holds(min: -0.11, max: 0))
        #expect(flat.shown == "10 %" && busy.shown == "1,000" && apartFactorThreshold.shown == "2x")
        #expect(busy.text == "calls >= 1,000")
    }

    @Test("findings.md and docs/claims.md print every rule's thresholds from the data")
    func printed() {
        let findings = FindingsReport(rows: [], columns: ResultRow.columns).markdown
        for rule in ClaimRule.all {
            for threshold in rule.thresholds {
                #expect(findings.contains("| \(rule.claim) | \(threshold.figure) | \(threshold.direction.rawValue) | \(threshold.shown) |"),
                        "\(rule.claim): \(threshold.text) missing from findings.md's threshold table")
            }
        }
    }
}
