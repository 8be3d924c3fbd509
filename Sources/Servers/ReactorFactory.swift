import Kernel

/// What to do with a reactor once it is built. Generic over the back-end, so each loop keeps
/// its specialised `Reactor<P>` (no dynamic dispatch per event) while one switch builds them all.
protocol ReactorUse {
    associatedtype Result
    func use<P: Poller>(_ reactor: Reactor<P>) throws -> Result
}

enum ReactorFactory {
    /// A reactor on `config.io` with the config's wire protocol and killer toggles, handed to `use`.
    static func build<U: ReactorUse>(_ config: ServerConfig, listenFD: Int32, capacity: Int, options: ReactorOptions,
                                     links: LoopLinks? = nil, _ use: U) throws -> U.Result {
        let path = RequestPath(config)
        switch config.io {
        case .select:
            return try use.use(Reactor(poller: SelectPoller(), listenFD: listenFD, wire: config.wire, capacity: capacity,
                                       options: options, path: path, links: links))
        case .poll:
            return try use.use(Reactor(poller: PollPoller(capacity: capacity), listenFD: listenFD, wire: config.wire, capacity: capacity,
                                       options: options, path: path, links: links))
        case .epollLT:
            return try use.use(Reactor(poller: EpollPoller(edgeTriggered: false), listenFD: listenFD, wire: config.wire, capacity: capacity,
                                       options: options, path: path, links: links))
        case .epollET:
            return try use.use(Reactor(poller: EpollPoller(edgeTriggered: true), listenFD: listenFD, wire: config.wire, capacity: capacity,
                                       options: options, path: path, links: links))
        case .blocking, .ioUring:
            throw ValueError("--model \(config.model.rawValue) runs its loops on --io select|poll|epoll-lt|epoll-et, not \(config.io.rawValue)")
        }
    }
}
