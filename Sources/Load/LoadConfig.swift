#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import Histogram
import Kernel
import Vocabulary

/// What `muxlab load` does: connect, warm up, measure, summarise.
public struct LoadConfig: Sendable {
    public var target: Endpoint
    public var connections = 10
    public var active = 10
    /// Requests per second in total (open loop); nil for closed loop.
    public var rate: Int?
    public var duration = 5.0
    public var warmup = 1.0
    public var messageSize = 64
    public var wire: WireProtocol = .echo
    /// HTTP: the requests sent and what counts as an answer (default `GET /`, any 2xx).
    public var http = HTTPRequestSpec()
    public var connectRate = 20_000
    public var cpus: CPUList?
    /// A request outstanding longer than this counts as a timeout and its connection is replaced.
    public var requestTimeout = 5.0
    /// Open loop: slots due within this many seconds go out together in one pass (`--batch`).
    public var batch = LoadGenerator.defaultBatch
    /// Closed loop: requests each active connection keeps in flight, answered in order (`--pipeline`).
    public var pipeline = 1
    /// A line of progress on stderr once a second (`muxlab load` on a terminal).
    public var progress = false
    /// Print `phase ...` lines on stdout (for the driver).
    public var printPhases = false
    public var allowNonLoopback = false
    /// Answered requests after which an active connection is closed and a new one opened; 0 keeps it alive.
    public var requestsPerConnection = 0
    /// Each active connection sends one request and closes at once (FIN, then a reset), never reading the answer (claim H1).
    public var hangUp = false
    /// Load processes; more than one runs `LoadProcesses`, which starts this many children.
    public var processes = 1
    /// Number of this process's first source address (127.0.x.y); nil lets the kernel pick while one address suffices.
    public var sourceFirst: Int?
    /// A child of a multi-process load: once connected it waits for SIGUSR1, so that all children warm up together.
    public var waitForStart = false
    /// A child of a multi-process load (its window messages carry the histogram for the parent).
    public var isChild = false
    /// Windows opened and closed by the driver over stdin, answered on stdout (`--control`):
    /// warm-up + duration then only bound the run.
    public var control = false
    /// A child of a self-timed multi-process load: its one window is warm-up and duration from its
    /// start (all children start together), and it sends that window to its parent over the channel.
    public var selfTimed = false
    /// The driver's counters file (`--counters`) and this process's slot in it (`--counter-slot`; a
    /// multi-process load's children take 1, 2, ...): the running count of answers, published as each arrives.
    public var counters: String?
    public var counterSlot = 0

    public init(target: Endpoint) { self.target = target }
}

/// A load run that could not start or went wrong as a whole: the message names the value and the limit.
public struct LoadError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
