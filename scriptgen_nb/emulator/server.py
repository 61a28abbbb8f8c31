"""The HTTP side of the emulator: the threaded stdlib server, routing, delivery, `Emulator`.

Owns `Emulator` (start/stop in a background thread, context manager, counters, live model,
batch and account changes, injectable clocks) and the request handler: it routes
`/{v1,v1beta,v1alpha}/models...`, `.../batches...`, `.../files...`, the Files API's
`/upload/...` and `/download/...` paths and `/emulator/{counters,reset}` (counting the API
version each path names), asks `GeminiService` for a reply and delivers it: JSON, SSE
(chunked, so keep-alive connections stay usable), after a simulated latency, or damaged as an
injected fault asks (cut JSON, a reset connection, a hang). Waits use one `threading.Event`, so
`stop()` releases every sleeping handler at once and closes idle keep-alive connections instead
of waiting for them. API keys are never logged.

Exposure: it binds 127.0.0.1 by default and refuses any address that is not loopback unless
`allow_remote=True` (`--allow-remote` on the command line): it answers with made-up content,
accepts any non-empty key when none are configured, and its `/emulator/reset` endpoint is open,
so it is a tool for this machine. A request body over `max_body_bytes` (20 MiB, Google's limit)
is refused unread with Google's 400; an upload chunk is not held in memory but streamed to the
file store, so uploads may be larger (up to `max_file_bytes`). Imports nothing from the
engine.

Measured ceiling (2026-11-28, this 2-core machine, Python 3.11.7): about 1,090 requests/second
for zero-latency `generateContent` (`latency_scale = 0`, one model without limits or faults),
served by `python -m scriptgen_nb.emulator` in its own process and driven for 10 s by 32
threads in another process, each with its own keep-alive `http.client.HTTPConnection`
(~920/s with 8 threads). The two processes share the two cores. A benchmark that needs more
than a few hundred requests per second measures the emulator, not the client.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import errors
from .config import BatchConfig, ConfigError, EmulatorConfig, ModelConfig
from .service import (
    Breakage,
    FileReply,
    GeminiService,
    HangReply,
    JsonReply,
    Reply,
    StreamReply,
)

__all__ = ["Emulator", "is_loopback"]

logger = logging.getLogger("scriptgen_nb.emulator")

_API_PATH = re.compile(r"^/(v1|v1beta|v1alpha)/(.*)$")
_MODEL_CALL = re.compile(
    r"^models/([^/:]+):"
    r"(generateContent|streamGenerateContent|countTokens|batchGenerateContent)$"
)
_MODEL_GET = re.compile(r"^models/([^/:]+)$")
_BATCH = re.compile(r"^batches/([^/:]+)(:cancel)?$")
_FILE = re.compile(r"^files/([^/:]+)(:download)?$")
_UPLOAD = re.compile(r"^/upload/(v1|v1beta|v1alpha)/files$")
_DOWNLOAD = re.compile(r"^/download/(v1|v1beta|v1alpha)/files/([^/:]+):download$")
_VERSION_IN_PATH = re.compile(r"^(?:/upload|/download)?/(v1|v1beta|v1alpha)/")
_KEY_IN_TEXT = re.compile(r"(key=)[^&\s'\"]*", re.IGNORECASE)
# After refusing an oversized body, read (and drop) this much of it at most, so a client that
# sent a little too much still gets the answer instead of a reset; a huge one is cut off.
_DRAIN_BYTES = 1024 * 1024
_DRAIN_TIMEOUT_S = 1.0
# A refused upload chunk is read to its end up to this size (the SDK sends 8 MiB chunks), so
# the client reads the refusal instead of a reset.
_DRAIN_UPLOAD_BYTES = 64 * 1024 * 1024
_FILE_PIECE_BYTES = 1024 * 1024


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1): this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops bursts into SYN retries: 60 concurrent requests of 2 s
    # took 6.3 s instead of 2.4 s.
    request_queue_size = 1024
    # `stop()` closes connections and joins handler threads itself, with a deadline.
    block_on_close = False

    def __init__(self, address: tuple[str, int], service: GeminiService) -> None:
        self.service = service
        self.max_body_bytes = service.config.max_body_bytes
        self.stopping = threading.Event()
        self.connections: dict[socket.socket, threading.Thread] = {}
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-request are routine here (timeouts, resets): no traceback.
        if isinstance(sys.exc_info()[1], OSError):
            logger.debug("connection to %s failed", client_address, exc_info=True)
        else:
            logger.exception("emulator error while serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "scriptgen-emulator"
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    server: _Server
    _in_flight: str | None = None  # the model this connection's current request counts under

    # -- connection bookkeeping ----------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections[self.connection] = threading.current_thread()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.pop(self.connection, None)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s", _KEY_IN_TEXT.sub(r"\1***", format % args))

    # -- routing -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes | None:
        """The request's body; None when it is over the limit (then refused and answered)."""
        if self.headers.get("Transfer-Encoding"):
            # Not sent by google-genai; without a length the connection cannot be reused.
            self.close_connection = True
            return b""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return b""
        if length > self.server.max_body_bytes:
            self._refuse_body(length)
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _refuse_body(self, length: int) -> None:
        """Answer an oversized request as Google does, without reading it, and hang up."""
        limit = self.server.max_body_bytes
        self.server.service.counters.error(400)
        body = errors.bad_request(f"Request payload size exceeds the limit: {limit} bytes.")
        data = json.dumps(body).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        self._drain(min(length, _DRAIN_BYTES))

    def _drain(self, remaining: int) -> None:
        """Drop what the client is still sending, then hang up.

        Closing a socket with unread data resets the connection, which could destroy the answer
        before the client reads it.
        """
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.settimeout(_DRAIN_TIMEOUT_S)
            while remaining > 0:
                chunk = self.rfile.read1(min(remaining, 65_536))
                if not chunk:
                    break
                remaining -= len(chunk)

    def _dispatch(self) -> None:
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self) -> None:
        service = self.server.service
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        upload = _UPLOAD.match(path)
        upload_id = _first(query, "upload_id")
        if upload is not None and upload_id is not None and self.command == "POST":
            service.counters.http_request()
            service.counters.api_version(upload.group(1))
            self._upload_chunk(service, upload_id, upload.group(1))
            return
        body = self._read_body()
        if body is None:
            return
        method = self.command
        if path == "/emulator/counters" and method == "GET":
            self._deliver(JsonReply(200, service.counters_reply()))
            return
        if path == "/emulator/reset" and method == "POST":
            service.reset()
            self._deliver(JsonReply(200, {}))
            return
        service.counters.http_request()
        key = self.headers.get("x-goog-api-key") or _first(query, "key")
        named = _VERSION_IN_PATH.match(path)
        if named is not None:
            service.counters.api_version(named.group(1))
        api = _API_PATH.match(path)
        if api is not None:
            version, rest = api.groups()
            call = _MODEL_CALL.match(rest)
            if call is not None and method == "POST":
                model, verb = call.groups()
                if verb == "countTokens":
                    self._deliver(service.count_tokens(version, model, key, body))
                elif verb == "batchGenerateContent":
                    self._deliver(service.create_batch(version, model, key, body))
                else:
                    stream = verb == "streamGenerateContent"
                    self._generate(service, version, model, key, body, stream)
                return
            if rest == "models" and method == "GET":
                page_size = _first(query, "pageSize") or _first(query, "page_size")
                token = _first(query, "pageToken") or _first(query, "page_token")
                self._deliver(service.list_models(key, page_size, token))
                return
            get = _MODEL_GET.match(rest)
            if get is not None and method == "GET":
                self._deliver(service.get_model(version, get.group(1), key))
                return
            reply = self._batch_or_file(service, method, version, rest, key, query)
            if reply is not None:
                self._deliver(reply)
                return
        if upload is not None and method == "POST":
            self._deliver(service.start_upload(key, self._header_map(), body, self._upload_url))
            return
        download = _DOWNLOAD.match(path)
        if download is not None and method == "GET":
            self._deliver(service.download_file(key, f"files/{download.group(2)}"))
            return
        service.counters.error(404)
        self._deliver(JsonReply(404, errors.not_found(f"{method} {path}")))

    def _header_map(self) -> dict[str, str]:
        """The request's headers under lower-case names."""
        return {name.lower(): value for name, value in self.headers.items()}

    def _origin(self) -> str:
        """`http://host:port` of this server, for URLs it hands out."""
        host, port = self.server.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def _upload_url(self, upload_id: str) -> str:
        return f"{self._origin()}{urlsplit(self.path).path}?upload_id={upload_id}"

    def _batch_or_file(
        self,
        service: GeminiService,
        method: str,
        version: str,
        rest: str,
        key: str | None,
        query: dict[str, list[str]],
    ) -> Reply | None:
        """The reply for a Batch API or Files API path, or None if `rest` is neither."""
        page_size = _first(query, "pageSize") or _first(query, "page_size")
        token = _first(query, "pageToken") or _first(query, "page_token")
        batches, origin = service.batches, self._origin()
        if rest == "batches" and method == "GET":
            return service.guarded(key, lambda: batches.list(page_size, token))
        if rest == "files" and method == "GET":
            return service.list_files(key, page_size, token, origin, version)
        batch = _BATCH.match(rest)
        if batch is not None:
            batch_id, cancel = batch.groups()
            if cancel and method == "POST":
                return service.guarded(key, lambda: batches.cancel(batch_id))
            if not cancel and method == "GET":
                over = service.config.batch.get_503_over_bytes  # now, not the job's own
                return service.guarded(key, lambda: batches.get(batch_id, over))
            if not cancel and method == "DELETE":
                return service.guarded(key, lambda: batches.delete(batch_id))
        file = _FILE.match(rest)
        if file is not None:
            name, download = f"files/{file.group(1)}", file.group(2)
            if download and method == "GET":
                return service.download_file(key, name)
            if not download and method == "GET":
                return service.get_file(key, name, origin, version)
            if not download and method == "DELETE":
                return service.delete_file(key, name)
        return None

    def _upload_chunk(self, service: GeminiService, upload_id: str, version: str) -> None:
        """Stream one resumable-upload chunk into the file store, then answer."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or self.headers.get("Transfer-Encoding"):
            # Without a length the chunk's end cannot be found; not sent by google-genai.
            self.close_connection = True
            service.counters.error(400)
            refusal = errors.bad_request("An upload chunk needs a Content-Length.")
            self._deliver(JsonReply(400, refusal, headers=(("X-Goog-Upload-Status", "final"),)))
            return
        consumed = 0

        def read(size: int) -> bytes:
            nonlocal consumed
            piece = self.rfile.read(size)
            consumed += len(piece)
            return piece

        reply = service.upload_chunk(
            upload_id, self._header_map(), length, read, self._origin(), version
        )
        self._deliver(reply)
        if consumed < length:
            self._drain(min(length - consumed, _DRAIN_UPLOAD_BYTES))

    def _generate(
        self,
        service: GeminiService,
        version: str,
        model: str,
        key: str | None,
        body: bytes,
        stream: bool,
    ) -> None:
        if service.model(model) is not None:
            service.counters.enter(model)
            self._in_flight = model
        try:
            self._deliver(service.generate(version, model, key, body, stream=stream))
        finally:
            self._release()

    def _release(self) -> None:
        """Leave the in-flight count just before the last bytes go out.

        A client that has its answer must never see itself still counted as in flight.
        """
        if self._in_flight is not None:
            self.server.service.counters.leave(self._in_flight)
            self._in_flight = None

    # -- delivery ------------------------------------------------------------------------------

    def _wait(self, seconds: float) -> bool:
        """Sleep unless the server is stopping; False means drop the request."""
        if seconds > 0:
            return not self.server.stopping.wait(seconds)
        return not self.server.stopping.is_set()

    def _drop(self) -> None:
        """End the exchange without a response (the client sees the connection close)."""
        self._release()
        self.close_connection = True

    def _reset(self) -> None:
        """Abort the connection with a TCP RST instead of an orderly close."""
        self._release()
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The socket only really closes (and resets) once the buffered reader lets go of it.
        self.rfile.close()
        self.connection.close()

    def _deliver(self, reply: Reply) -> None:
        if isinstance(reply, HangReply):
            self._wait(reply.seconds)
            self._drop()
        elif isinstance(reply, StreamReply):
            self._deliver_stream(reply)
        elif isinstance(reply, FileReply):
            self._deliver_file(reply)
        elif not self._wait(reply.delay_s):
            self._drop()
        else:
            self._deliver_json(reply)

    def _deliver_json(self, reply: JsonReply) -> None:
        data = json.dumps(reply.body, ensure_ascii=False).encode()
        if reply.breakage is Breakage.MALFORMED:
            data = data[: len(data) * 3 // 5]
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if reply.breakage is Breakage.RESET:
            self.wfile.write(data[: len(data) // 2])
            self._reset()
            return
        self._release()
        self.wfile.write(data)

    def _deliver_file(self, reply: FileReply) -> None:
        with reply.handle:
            self.send_response(200)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(reply.size))
            self.end_headers()
            remaining = reply.size
            while remaining > 0 and (piece := reply.handle.read(min(remaining, _FILE_PIECE_BYTES))):
                self.wfile.write(piece)
                remaining -= len(piece)

    def _deliver_stream(self, reply: StreamReply) -> None:
        reset_at = len(reply.events) // 2 if reply.breakage is Breakage.RESET else -1
        started = False
        for i, (event, delay) in enumerate(zip(reply.events, reply.delays_s, strict=True)):
            if not self._wait(delay):
                self._drop()
                return
            if not started:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                started = True
            payload = json.dumps(event, ensure_ascii=False).encode()
            if reply.breakage is Breakage.MALFORMED and i == len(reply.events) - 1:
                payload = payload[: len(payload) * 3 // 5]
            frame = b"data: " + payload + b"\r\n\r\n"
            if i == reset_at:
                self.wfile.write(b"%x\r\n" % len(frame) + frame[: len(frame) // 2])
                self._reset()
                return
            chunk = b"%x\r\n%s\r\n" % (len(frame), frame)
            if i == len(reply.events) - 1:
                self._release()
                chunk += b"0\r\n\r\n"
            self.wfile.write(chunk)


class Emulator:
    """A Gemini-compatible HTTP server on a background thread.

    >>> with Emulator(EmulatorConfig(latency_scale=0)) as emu:    # doctest: +SKIP
    ...     client = genai.Client(api_key="k", http_options={"base_url": emu.base_url})

    `port=0` picks a free port. State (quota windows, counters, live model changes) belongs to
    the instance and survives `stop()`/`start()`. A `host` that is not loopback is refused
    unless `allow_remote=True`: the emulator is meant for this machine (see the module's
    docstring). `clock` (monotonic: windows, storms, caching, batch jobs) and `wall_clock`
    (Unix time: Google's Pacific days) let a test move time without waiting.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ConfigError(
                f"host={host!r} is not a loopback address. The emulator serves only this "
                "machine (it accepts any key when none are configured and anyone may reset "
                "it); pass allow_remote=True (--allow-remote) to serve others, ideally with "
                "api_keys set."
            )
        self._service = GeminiService(
            config if config is not None else EmulatorConfig(), clock=clock, wall_clock=wall_clock
        )
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> EmulatorConfig:
        """The configuration in force, including live changes (models, batch, account)."""
        return self._service.config

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the real one once started with port 0)."""
        return self._port

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT`, for `HttpOptions(base_url=...)`."""
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return f"http://{self._host}:{self._port}"

    def start(self) -> Emulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server = _Server((self._host, self._port), self._service)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"gemini-emulator:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving: wake sleeping and hanging handlers, close every connection, join."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.stopping.set()
        server.shutdown()
        server.server_close()
        with server.connections_lock:
            open_connections = dict(server.connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout_s
        for handler_thread in [thread, *open_connections.values()]:
            handler_thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def counters(self) -> dict[str, Any]:
        """A snapshot of the counters (the same JSON `GET /emulator/counters` returns)."""
        return self._service.counters_reply()

    def attempts_for(self, prompt: str, model: str | None = None) -> int:
        """How many generate requests carried this prompt text (on `model`, or on any)."""
        return self._service.counters.attempts_for(prompt, model)

    def reset(self) -> None:
        """Zero the counters, empty the quota windows and restart the storm clock (as
        `POST /emulator/reset`)."""
        self._service.reset()

    def set_model(self, name: str, model: ModelConfig) -> None:
        """Add a model or replace its configuration while running."""
        self._service.set_model(name, model)

    def update_model(self, name: str, **changes: Any) -> ModelConfig:
        """Change fields of a model while running, e.g. `update_model("m", rpd=3)`."""
        return self._service.update_model(name, **changes)

    def update_batch(self, **changes: Any) -> BatchConfig:
        """Change the batch settings for jobs created from now on, e.g. `outcome="failed"`."""
        return self._service.update_batch(**changes)

    def update_config(self, **changes: Any) -> EmulatorConfig:
        """Change the account's settings while running, e.g. `update_config(billing="depleted")`:
        tier, quota_errors, storms, billing, refusal, day_retry_delay_s."""
        return self._service.update_config(**changes)
