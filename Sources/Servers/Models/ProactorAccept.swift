#if canImport(Glibc)
import Glibc
#endif
import CShims
import CUring
import Kernel

/// The proactor's accepts: a multishot accept armed on the listener, re-armed when the kernel ends it;
/// EMFILE shedding as the reactor does it.
extension Proactor {
    func armAccept() {
        if mux_uring_accept(ring, listenFD, multishotAccept ? 1 : 0, tag(.accept, listenFD, 0)) == 0 {
            acceptArmed = true
            stats.acceptRearms &+= 1
        }
    }

    func onAccept(_ res: Int32, _ flags: UInt32) {
        // Without F_MORE the accept is over (single-shot, an error, or CQ overflow): the loop re-arms it.
        if flags & MUX_CQE_F_MORE == 0 { acceptArmed = false }
        if res >= 0 {
            register(res)
            return
        }
        switch -res {
        case EINVAL where multishotAccept:
            multishotAccept = false  // a kernel before 5.19: one accept per SQE
        case EMFILE, ENFILE:
            stats.acceptEMFILE &+= 1
            if !shedWithReserveDescriptor() { acceptWaitsForDescriptor = true }
        default:
            break  // the client's trouble (ECONNABORTED, ...), not the listener's
        }
    }

    func register(_ fd: Int32) {
        if Int(fd) >= capacity {
            refuse(fd, "descriptor \(fd) is beyond the connection table (\(capacity))")
            return
        }
        Sockets.setNoDelay(fd)
        var c = ProactorConnection()
        c.open = true
        c.generation = connections[Int(fd)].generation &+ 1
        c.lastActive = now
        connections[Int(fd)] = c
        if fd > highestFD { highestFD = fd }
        stats.accepted &+= 1
        armRecv(fd, first: true)
    }

    func refuse(_ fd: Int32, _ why: String) {
        FD.close(fd)
        stats.refused &+= 1
        refusalNotice.say(why)
    }

    /// The reserve-descriptor trick (claim E4): free one slot, accept the waiting client, close it, re-reserve.
    /// True when accepting may go on: a client was shed or a reserve is held again.
    func shedWithReserveDescriptor() -> Bool {
        guard let shed = reserve.shed(accepting: { mux_accept4_nonblock(listenFD) }) else { return false }
        if shed { stats.refused &+= 1 }
        return shed || reserve.isHeld
    }
}
