// muxlab-swiftnio: SwiftNIO's HTTP/1.1 server as a peer beside nginx and muxlab's own servers.
//
//   muxlab-swiftnio --port PORT [--host 127.0.0.1] [--threads 1]
//
// Written as SwiftNIO's own examples write a server (ServerBootstrap, the HTTP/1.1 pipeline
// from configureHTTPServerPipeline, one inbound handler), not tuned beyond them: the point is
// what the framework as people use it costs per request. Every request, whatever its path,
// gets nginx's answer in workloads/peers/nginx.conf: 200, text/plain, "Hello, World!",
// keep-alive unless the request says close. Writes go out in channelRead and are flushed once
// per read burst (channelReadComplete), so pipelined requests share a write, as nginx's do.
// The response head and body are built once; a request allocates only what NIO itself does.

import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    fputs("muxlab-swiftnio: \(message)\n", stderr)
    exit(2)
}

/// `--name value` pairs; anything else is refused with what is allowed.
func options(_ arguments: [String]) -> (host: String, port: Int, threads: Int) {
    var host = "127.0.0.1", port: Int?, threads = 1
    var rest = arguments[...]
    while let flag = rest.popFirst() {
        guard let value = rest.popFirst() else { fail("\(flag) needs a value") }
        switch flag {
        case "--host": host = value
        case "--port":
            guard let p = Int(value), (1...65535).contains(p) else { fail("--port \(value): not a port (1-65535)") }
            port = p
        case "--threads":
            guard let t = Int(value), (1...1024).contains(t) else { fail("--threads \(value): not a thread count (1-1024)") }
            threads = t
        default: fail("unknown option \(flag) (allowed: --host H, --port P, --threads N)")
        }
    }
    guard let port else { fail("--port is required (usage: muxlab-swiftnio --port PORT [--host 127.0.0.1] [--threads 1])") }
    return (host, port, threads)
}

final class HelloHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let keepAliveHead: HTTPResponseHead
    private let closeHead: HTTPResponseHead
    private let body: ByteBuffer
    private var keepAlive = true

    init(body: ByteBuffer) {
        self.body = body
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        keepAliveHead = HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)
        headers.add(name: "Connection", value: "close")
        closeHead = HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            keepAlive = request.isKeepAlive
        case .body:
            break  // bodies are read and dropped, as nginx's `return 200` does
        case .end:
            context.write(wrapOutboundOut(.head(keepAlive ? keepAliveHead : closeHead)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            if keepAlive {
                context.write(wrapOutboundOut(.end(nil)), promise: nil)
            } else {
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

let (host, port, threads) = options(Array(CommandLine.arguments.dropFirst()))
let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
let body = ByteBuffer(string: "Hello, World!")
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(ChannelOptions.backlog, value: 4096)
    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
            channel.pipeline.addHandler(HelloHandler(body: body))
        }
    }

do {
    let channel = try bootstrap.bind(host: host, port: port).wait()
    fputs("muxlab-swiftnio: listening on \(host):\(port) with \(threads) event loop thread(s)\n", stderr)
    try channel.closeFuture.wait()
} catch {
    fail("cannot listen on \(host):\(port): \(error)")
}
