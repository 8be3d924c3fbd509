#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import Histogram
import Kernel

/// The open loop: requests due at the rate are offered to idle connections, queued where none is
/// free, and their latency counted from when they were due (wrk2's rule, no coordinated omission).
extension LoadLoop {
    // Accounting: a slot belongs to the window open when it is released, due by then or within the batch (`slots`);
    // its outcome counts in the window open when the outcome is known: the answer's arrival (`requests`), the
    // timeout's detection (`errors.timeout`), or the moment it could not be sent (`unsent`: its release when its
    // connection is dead or its backlog full, or its connection's death while it waited). Those whose outcome was
    // still to come at the edges are counted there (`inFlightAtOpen`, `inFlightAtClose`), so the ledger is exact:
    // requests + timeouts + unsent (+ read, write and wrong-response errors) = slots + in flight at open - at close,
    // and slots = rate x window up to one batch.

    /// Releases every slot due by `limit` to its connection, in schedule order; returns the next slot's intended time.
    func releaseSlots(through limit: UInt64) -> UInt64 {
        while true {
            let due = runStart + UInt64(Double(nextSlot) * interval)
            if due > limit { return due }
            let i = Int(activeIndex[nextSlot % activeCount])
            nextSlot += 1
            // Released while the window is open: after a late wake-up at the opening a slot due just before it
            // counts here too, so that every slot is either in flight at the opening or released inside.
            let counted = measuring && due < windowEnd
            if counted { slots += 1 }
            offer(i, due: due, counted: counted)
        }
    }

    /// A slot for client `i`: sent now if its connection is open and free, else waits in its backlog, else unsent.
    @inline(__always)
    func offer(_ i: Int, due: UInt64, counted: Bool) {
        guard clients[i].state != 3, clients[i].queued < LoadGenerator.slotBacklog else {
            if counted { unsent += 1 }
            return
        }
        let base = Int(clients[i].slot) * LoadLoop.backlogCapacity
        backlog[base + (Int(clients[i].queueHead) + Int(clients[i].queued)) % LoadLoop.backlogCapacity] = due
        clients[i].queued += 1
        if clients[i].state == 2 && !clients[i].busy { sendQueued(i) }
    }

    /// Sends client `i`'s oldest waiting slot, latency from its intended time.
    @inline(__always)
    func sendQueued(_ i: Int) {
        let head = Int(clients[i].queueHead)
        let due = backlog[Int(clients[i].slot) * LoadLoop.backlogCapacity + head]
        clients[i].queueHead = Int32(head + 1 == LoadLoop.backlogCapacity ? 0 : head + 1)
        clients[i].queued -= 1
        startRequest(i, origin: due)
    }

    /// Slots sent and unanswered or waiting in a backlog, over the active connections (a slot put back for a
    /// resend is in its backlog only: a released connection is not busy).
    func slotsOutstanding() -> Int {
        var n = 0
        for j in 0..<activeCount {
            let i = Int(activeIndex[j])
            n += Int(clients[i].queued) + (clients[i].busy ? 1 : 0)
        }
        return n
    }

    /// Puts a slot back first in client `i`'s line (the ring's spare place holds it when the backlog is full).
    func requeueFirst(_ i: Int, _ due: UInt64) {
        let head = Int(clients[i].queueHead) == 0 ? LoadLoop.backlogCapacity - 1 : Int(clients[i].queueHead) - 1
        clients[i].queueHead = Int32(head)
        backlog[Int(clients[i].slot) * LoadLoop.backlogCapacity + head] = due
        clients[i].queued += 1
    }
}
