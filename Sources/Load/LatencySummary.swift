import Histogram
import Kernel

extension LatencySummary {
    /// Percentiles of a nanosecond histogram, in microseconds to the nanosecond; all nil when it is empty.
    public init(_ histogram: Histogram<UInt64>) {
        self.init()
        guard histogram.totalCount > 0 else { return }
        let us = { (ns: UInt64) in (Double(ns) / 1000 * 1000).rounded() / 1000 }
        p50 = us(histogram.valueAtPercentile(50))
        p90 = us(histogram.valueAtPercentile(90))
        p99 = us(histogram.valueAtPercentile(99))
        p999 = us(histogram.valueAtPercentile(99.9))
        max = us(histogram.max)
        mean = (histogram.mean / 1000 * 1000).rounded() / 1000
    }
}
