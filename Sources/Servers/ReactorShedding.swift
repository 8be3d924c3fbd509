#if canImport(Glibc)
import Glibc
#endif
import CShims
import Kernel

/// Refusing clients: under EMFILE the reserve descriptor is closed, the client accepted and closed, and
/// the reserve re-opened, so a level-triggered loop does not spin on a listener it cannot serve (claim E4).
extension Reactor {
    func refuse(_ fd: Int32, _ why: String) {
        FD.close(fd)
        stats.refused &+= 1
        refusalNotice.say(why)
    }

    /// The reserve-descriptor trick: free one slot, accept the waiting client, close it, re-reserve.
    /// True when a client was shed (more may be queued).
    func shedWithReserveDescriptor() -> Bool {
        let shed = reserve.shed { mux_accept4_nonblock(listenFD) } ?? false
        if shed { stats.refused &+= 1 }
        return shed
    }
}
