#!/usr/bin/env python3
"""Serves a model directory to the browser tests (tests/web.rs), with the faults the
loader must survive. URLs are /<mode>-<tag>/<file>: every test uses its own tag, so
fault state, request logs and the browser's cache entries never mix between tests.

modes:
  plain    the files as they are (Range requests answered with 206)
  flaky    the first GET of each shard without a Range header is cut off halfway
           (the connection is closed mid-body); later requests are served normally
  corrupt  the first GET of the first shard has one byte flipped; later ones are good
  norange  like flaky, but Range headers are ignored (200 with the whole file)
  stall    like flaky, but the connection stays open and silent for 20 s instead of closing

GET /log?tag=T returns the requests made under tag T as JSON: [{"path", "range", "status"}].
Every response allows any origin (the test page is served from another port).
"""

import argparse
import json
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LOCK = threading.Lock()
LOG = {}  # tag -> list of requests
SEEN = set()  # (mode, tag, file) that already had their one fault


def first_time(key):
    with LOCK:
        if key in SEEN:
            return False
        SEEN.add(key)
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    model_dir = "."

    def log_message(self, *args):
        pass

    def cors(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Headers", "Range")
        self.send_header("Access-Control-Expose-Headers", "Content-Range, Content-Length")

    def do_OPTIONS(self):
        self.send_response(204)
        self.cors()
        self.send_header("Content-Length", "0")
        self.end_headers()

    def reply(self, status, body, content_type="application/octet-stream", extra=()):
        self.send_response(status)
        self.cors()
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/log":
            tag = parse_qs(url.query).get("tag", [""])[0]
            with LOCK:
                entries = list(LOG.get(tag, []))
            return self.reply(200, json.dumps(entries).encode(), "application/json")
        match = re.fullmatch(r"/(plain|flaky|corrupt|norange|stall)-([\w.]+)/([\w.-]+)", url.path)
        if not match:
            return self.reply(404, b"not found", "text/plain")
        mode, tag, name = match.groups()
        path = os.path.join(self.model_dir, name)
        range_header = self.headers.get("Range")
        entry = {"path": name, "range": range_header}
        with LOCK:
            LOG.setdefault(tag, []).append(entry)
        if not os.path.isfile(path):
            entry["status"] = 404
            return self.reply(404, b"not found", "text/plain")
        with open(path, "rb") as f:
            data = f.read()
        shard = name.startswith("weights-")
        if mode == "corrupt" and shard and name.startswith("weights-00001") and first_time((mode, tag, name)):
            data = bytearray(data)
            data[len(data) // 2] ^= 0xFF
            data = bytes(data)
        start = 0
        if range_header and mode != "norange":
            m = re.fullmatch(r"bytes=(\d+)-", range_header)
            if not m or int(m.group(1)) >= len(data):
                entry["status"] = 416
                return self.reply(416, b"", extra=[("Content-Range", f"bytes */{len(data)}")])
            start = int(m.group(1))
        cut = (
            mode in ("flaky", "norange", "stall")
            and shard
            and not range_header
            and first_time((mode, tag, name))
        )
        status = 206 if start else 200
        entry["status"] = status
        self.send_response(status)
        self.cors()
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if cut:
            # Half the promised body, then a dead connection: the browser's body stream
            # errors after delivering those bytes.
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            entry["cut"] = True
            if mode == "stall":
                time.sleep(20)
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(data[start:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    Handler.model_dir = args.model
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
