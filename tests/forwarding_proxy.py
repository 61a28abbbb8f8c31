"""A real endpoint that is not an emulator: an HTTP proxy in front of one, as a proxy in front of
Google would be (its answers are the emulator's, but nothing says they are simulated).

It forwards every request to the emulator except the emulator's own `/emulator/...` paths, which
it answers 404 like any other service, so `endpoints.is_emulator` takes it for a real one. Given
an `answers` event, it holds each generateContent answer until the event is set: a test decides
when the client hears back, and the emulator's counters show the requests meanwhile.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


@contextmanager
def forwarding_proxy(target_url: str, answers: threading.Event | None = None) -> Iterator[str]:
    """Serve a proxy to `target_url` on a free local port; yields the proxy's base URL. With
    `answers`, generateContent answers wait for it to be set (at most a minute)."""
    target = urlsplit(target_url)

    class Forward(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet tests
            pass

        def _forward(self) -> None:
            if self.path.startswith("/emulator/"):
                self.send_error(404)
                return
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                if answers is not None and ":generateContent" in self.path:
                    answers.wait(timeout=60)
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
            finally:
                upstream.close()

        do_GET = do_POST = do_DELETE = do_PATCH = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
