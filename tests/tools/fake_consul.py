#!/usr/bin/env python3
"""A fake Consul HTTP agent for the watcher's tests: serves scripted answers per path and
records every request (GET /_requests).

Usage:
    fake_consul.py [--port N] (--script FILE | --script-json TEXT)

It binds 127.0.0.1 (port 0 = the kernel picks one) and prints "PORT <n>" as the first line
on stdout. The script is JSON, either a list of responses served in order for every path,
or {"paths": {"/v1/kv/x/": [...], "/v1/health/service/y": [...]}} (paths without the
query string). When a path's list is used up, the last response is repeated after a wait
as long as the request's ?wait= (capped at 10 s), the way a blocking query times out;
a path with no script gets 404.

A response is an object; every field is optional:
    status          HTTP status (200)
    index           X-Consul-Index
    last_contact    X-Consul-LastContact (ms)
    known_leader    X-Consul-KnownLeader ("true"/"false")
    filtered        true: X-Consul-Results-Filtered-By-ACLs: true
    retry_after     Retry-After (sent as given)
    headers         {name: value} sent as well
    body            the body, a string
    json            the body, any JSON value (serialised)
    body_size       the body, that many 'x' bytes (for size limits)
    delay_ms        wait before answering (a blocking query)
    action          "truncate": announce more bytes than are sent, then close
                    "reset": close the connection with a TCP RST, no answer
                    "no_length": no Content-Length, close after the body
                    "garbage": the body is broken JSON

GET /_requests answers a JSON list of {"method", "path", "query", "params", "headers",
"t"} (params: {name: [values]}, a valueless parameter such as ?stale gives [""]; t:
monotonic seconds). Requests are recorded when they arrive, before any delay.
"""

import argparse
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_HOLD_S = 10.0


class Sink:
    """Stands in for wfile once the socket was reset."""

    closed = False

    def write(self, data):
        return len(data)

    def flush(self):
        pass

    def close(self):
        pass


def parse_wait(params):
    """Consul's ?wait: "1000ms", "5s", "1m" (a Go duration, simplified)."""
    values = params.get("wait")
    if not values:
        return 0.0
    v = values[0]
    try:
        for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
            if v.endswith(suffix):
                return float(v[: -len(suffix)]) * scale
        return float(v)
    except ValueError:
        return 0.0


class State:
    def __init__(self, script):
        if isinstance(script, list):
            self.scripts = {None: script}
        else:
            self.scripts = dict(script.get("paths", {}))
        self.served = {}
        self.requests = []
        self.lock = threading.Lock()

    def next_response(self, path):
        """(response, exhausted) for path, or (None, False) when nothing is scripted."""
        with self.lock:
            key = path if path in self.scripts else None
            script = self.scripts.get(key)
            if not script:
                return None, False
            i = self.served.get(key, 0)
            self.served[key] = i + 1
            if i < len(script):
                return script[i], False
            return script[-1], True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-consul/1"

    def log_message(self, fmt, *args):  # quiet: the tests read /_requests instead
        pass

    def do_GET(self):
        st = self.server.state
        url = urlsplit(self.path)
        if url.path == "/_requests":
            with st.lock:
                data = json.dumps(st.requests).encode()
            self.send_plain(200, data, "application/json")
            return
        params = parse_qs(url.query, keep_blank_values=True)
        with st.lock:
            st.requests.append(
                {
                    "method": "GET",
                    "path": url.path,
                    "query": url.query,
                    "params": params,
                    "headers": {k: v for k, v in self.headers.items()},
                    "t": time.monotonic(),
                }
            )
        resp, exhausted = st.next_response(url.path)
        if resp is None:
            self.send_plain(404, b"no script for this path\n", "text/plain")
            return
        if exhausted:
            time.sleep(min(parse_wait(params), MAX_HOLD_S))
        self.answer(resp)

    def send_plain(self, status, data, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def answer(self, r):
        delay = r.get("delay_ms", 0)
        if delay:
            time.sleep(delay / 1000.0)
        action = r.get("action")
        if action == "reset":
            # SO_LINGER 0: close() sends RST instead of FIN.
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.connection.close()
            self.wfile = Sink()
            self.close_connection = True
            return
        if "json" in r:
            body = json.dumps(r["json"]).encode()
        elif "body_size" in r:
            body = b"x" * int(r["body_size"])
        elif action == "garbage":
            body = r.get("body", '[{"Key": "ringside/x/nodes/a", "Value": ').encode()
        else:
            body = r.get("body", "").encode()
        self.send_response(int(r.get("status", 200)))
        self.send_header("Content-Type", "application/json")
        if "index" in r:
            self.send_header("X-Consul-Index", str(r["index"]))
        if "last_contact" in r:
            self.send_header("X-Consul-LastContact", str(r["last_contact"]))
        if "known_leader" in r:
            self.send_header("X-Consul-KnownLeader", str(r["known_leader"]).lower())
        if r.get("filtered"):
            self.send_header("X-Consul-Results-Filtered-By-ACLs", "true")
        if "retry_after" in r:
            self.send_header("Retry-After", str(r["retry_after"]))
        for k, v in r.get("headers", {}).items():
            self.send_header(k, str(v))
        if action == "truncate":
            self.send_header("Content-Length", str(len(body) + 100))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        if action == "no_length":
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients that go away mid-answer (a cancelled watch, a reset) are expected.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, BrokenPipeError, OSError, ValueError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--script", help="JSON script file")
    g.add_argument("--script-json", help="JSON script text")
    a = ap.parse_args()
    if a.script:
        with open(a.script, encoding="utf-8") as f:
            script = json.load(f)
    else:
        script = json.loads(a.script_json)
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.state = State(script)
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
