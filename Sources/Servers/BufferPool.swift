/// Fixed-size byte buffers lent to connections only while they hold unsent
/// output or a partial request, and returned for reuse: after warm-up the pool
/// stops growing, so the hot loop allocates nothing.
public final class BufferPool {
    public let bufferSize: Int
    private var buffers: [UnsafeMutableRawPointer] = []
    private var free: [Int32] = []
    public private(set) var inUse = 0

    public init(bufferSize: Int, reserve: Int = 64) {
        self.bufferSize = bufferSize
        buffers.reserveCapacity(reserve)
        free.reserveCapacity(reserve)
    }

    deinit {
        for b in buffers { b.deallocate() }
    }

    /// A buffer index; allocates only when every existing buffer is lent out.
    @inline(__always)
    public func acquire() -> Int32 {
        inUse += 1
        if let i = free.popLast() { return i }
        buffers.append(.allocate(byteCount: bufferSize, alignment: 16))
        free.reserveCapacity(buffers.count)
        return Int32(buffers.count - 1)
    }

    @inline(__always)
    public func release(_ i: Int32) {
        inUse -= 1
        free.append(i)
    }

    @inline(__always)
    public func base(_ i: Int32) -> UnsafeMutableRawPointer { buffers[Int(i)] }

    public var allocated: Int { buffers.count }
}
