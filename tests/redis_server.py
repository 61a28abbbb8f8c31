"""A real `redis-server` for the tests of the Redis quota ledger (Debian's package, which
`make test` installs when it can): started on a free port in a folder of its own, persisting
nothing, and stopped by its own pid. Where there is no binary, or the `redis` extra is not
installed, the tests that need it skip, saying why.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INSTALL = "`make test` installs Debian's redis-server where it can (root and apt-get)"
START_TIMEOUT_S = 10.0


def missing() -> str | None:
    """Why no server can be started here, or None."""
    try:
        import redis  # noqa: F401  (the extra the Redis ledger needs)
    except ImportError:
        return "the redis package is not installed: pip install 'scriptgen_nb[test]'"
    if shutil.which("redis-server") is None:
        return f"no redis-server on PATH: {INSTALL}"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A redis-server on 127.0.0.1 for the block: its URL once it answers PING."""
    import redis

    port = _free_port()
    binary = shutil.which("redis-server")
    assert binary is not None
    log = folder / "redis-server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start: {log.read_text(errors='replace')[-800:]}"
                    ) from None
                time.sleep(0.02)
        client.close()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
