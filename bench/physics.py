"""The ceilings every benchmark sits under: the emulator alone, measured with a trivial client.

`emulator_ceiling` drives zero-latency `generateContent` calls at an emulator (in its own
process) from plain threads, each with its own keep-alive `http.client.HTTPConnection`: no SDK,
no asyncio, almost no client work. What it reaches is the most any client could get from this
server on this machine (the two processes share the two cores).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from .emulator_proc import API_KEY, emulator_config, emulator_process, model_config

MODEL = "gemini-bench-unlimited"


def _hammer(
    host: str, port: int, body: bytes, stop: threading.Event, counts: list[int], slot: int
) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    headers = {"x-goog-api-key": API_KEY, "Content-Type": "application/json"}
    done = 0
    try:
        while not stop.is_set():
            connection.request("POST", f"/v1beta/models/{MODEL}:generateContent", body, headers)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                done += 1
    finally:
        connection.close()
        counts[slot] = done


def emulator_ceiling(threads: int, seconds: float) -> dict[str, Any]:
    """Requests per second an emulator answers to `threads` http.client loops."""
    config = emulator_config({MODEL: model_config()}, minute_s=60.0)
    with emulator_process(config) as emulator:
        url = urlsplit(emulator.base_url)
        assert url.hostname is not None and url.port is not None
        body = json.dumps(
            {"contents": [{"role": "user", "parts": [{"text": "Write a short script."}]}]}
        ).encode()
        stop = threading.Event()
        counts = [0] * threads
        workers = [
            threading.Thread(
                target=_hammer, args=(url.hostname, url.port, body, stop, counts, i), daemon=True
            )
            for i in range(threads)
        ]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        time.sleep(seconds)
        stop.set()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
    return {
        "threads": threads,
        "seconds": round(elapsed, 2),
        "requests": sum(counts),
        "rps": round(sum(counts) / elapsed, 1),
    }
