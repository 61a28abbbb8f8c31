"""The emulator's command line: `python -m scriptgen_nb.emulator [options]`.

Owns `main(argv)`, which `scriptgen emulator ...` delegates to: it builds the configuration
from the optional file and flags, starts the server, prints the base URL on one flushed line and
serves until Ctrl-C or SIGTERM, then exits 0. Imports nothing from the engine.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from .config import ConfigError, EmulatorConfig
from .server import Emulator, is_loopback

__all__ = ["main"]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65_535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: use 0 (a free one) to 65535")
    return port


def _parser(prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        allow_abbrev=False,  # `--min` is not taken for `--minute-s`
        description=(
            "Run a local Gemini-compatible HTTP server (generateContent, streamGenerateContent, "
            "countTokens, models, the Batch API and the Files API) with per-model RPM/TPM/RPD "
            "quotas, simulated latency and deterministic fault injection. Point google-genai at "
            "it with "
            "HttpOptions(base_url=URL). Counters: GET URL/emulator/counters; "
            "reset: POST URL/emulator/reset."
        ),
        epilog=(
            "Flags override the file. Without --config the default catalogue is served with "
            "free-tier-like limits, real window lengths and any non-empty API key accepted."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host that is not loopback (other machines could then reach it; "
        "set --api-key too)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=8765,
        help="port to bind; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML (.toml) or JSON (.json) file with EmulatorConfig fields (among them the "
        "real service's ugly cases: tier, quota_errors, storms, billing, refusal, "
        "day_retry_delay_s), a [models] table and a [batch] table",
    )
    parser.add_argument("--seed", type=int, help="seed for text, latency jitter and faults")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accept only this key (repeatable); by default any non-empty key is accepted",
    )
    parser.add_argument(
        "--latency-scale",
        type=float,
        metavar="X",
        help="multiply every simulated latency by X (0 = answer at once)",
    )
    parser.add_argument("--minute-s", type=float, metavar="S", help="length of the RPM/TPM window")
    parser.add_argument("--day-s", type=float, metavar="S", help="length of the RPD window")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log every request (method, path, status) to stderr",
    )
    return parser


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Run the emulator until interrupted; returns the process exit code."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    try:
        config = EmulatorConfig.from_file(args.config) if args.config else EmulatorConfig()
        overrides: dict[str, Any] = {
            name: value
            for name, value in (
                ("seed", args.seed),
                ("api_keys", tuple(args.api_keys) if args.api_keys else None),
                ("latency_scale", args.latency_scale),
                ("minute_s", args.minute_s),
                ("day_s", args.day_s),
            )
            if value is not None
        }
        config = dataclasses.replace(config, **overrides)
    except ConfigError as exc:
        parser.error(str(exc))
    if not args.allow_remote and not is_loopback(args.host):
        parser.error(
            f"--host {args.host} is not a loopback address: the emulator serves only this "
            "machine unless you pass --allow-remote (and, ideally, --api-key KEY)"
        )
    if args.allow_remote and not is_loopback(args.host) and not config.api_keys:
        print(
            "warning: serving other machines with no --api-key: any non-empty key is accepted",
            file=sys.stderr,
        )
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(message)s")
    emulator = Emulator(config, host=args.host, port=args.port, allow_remote=args.allow_remote)
    try:
        emulator.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request_stop)
    try:
        print(f"Gemini emulator listening on {emulator.base_url}", flush=True)
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
