#!/usr/bin/env python3
"""A small HTTP/1.1 service for muxlab's tests and its own-service example (workloads/own-service.toml).

  POST /orders   a JSON body {"items": [...]}; answers 201 with a chunked JSON reply
                 ({"id": N, "items": K}); 400 on a body that is not JSON
  GET  /health   200, Content-Length, "ok"
  GET  /slow     200 after 20 ms
  anything else  404
A request with "Connection: close" (or the query ?close=1) is answered with "Connection: close" and the
connection closed; "Expect: 100-continue" gets "100 Continue" first (http.server does that).

  python3 services/orders.py --port 8000 [--host 127.0.0.1]
Prints "ready port=<port>" once it listens (port 0: the kernel picks one).
"""
import argparse
import itertools
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ORDER_IDS = itertools.count(1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client or the query says close

    def log_message(self, *args):  # no line per request
        pass

    def wants_close(self):
        return self.path.endswith("?close=1") or self.headers.get("Connection", "").lower() == "close"

    def finish_headers(self):
        if self.wants_close():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def reply(self, status, body, content_type="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.finish_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/health":
            self.reply(200, "ok")
        elif path == "/slow":
            time.sleep(0.02)
            self.reply(200, "slow")
        else:
            self.reply(404, "not found")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path.split("?")[0] != "/orders":
            self.reply(404, "not found")
            return
        try:
            order = json.loads(body)
            items = len(order.get("items", []))
        except (ValueError, AttributeError):
            self.reply(400, "body is not a JSON object")
            return
        reply = json.dumps({"id": next(ORDER_IDS), "items": items, "status": "accepted"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.finish_headers()
        # Two chunks and the last-chunk with no trailers.
        half = len(reply) // 2
        for part in (reply[:half], reply[half:]):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")


def main():
    parser = argparse.ArgumentParser(description="orders: a small HTTP/1.1 service for muxlab")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"ready port={server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
