"""The `scriptgen` command: `demo` (a batch on the embedded emulator) and `emulator` (serve it).

Each subcommand parses its own arguments and calls into the library; nothing here holds logic
the library lacks.
"""

from __future__ import annotations

import argparse
import signal
import sys

from . import __version__

COMMANDS = {
    "demo": "run the demo batch (chapter scripts) on the embedded emulator; --real uses Google",
    "emulator": "serve the Gemini-compatible emulator (see `scriptgen emulator --help`)",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scriptgen",
        description="Run large batches of Gemini generation requests, paced to your rate limits.",
    )
    parser.add_argument("--version", action="version", version=f"scriptgen_nb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = sub.add_parser("demo", help=COMMANDS["demo"], description=COMMANDS["demo"])
    demo.add_argument(
        "-n",
        "--requests",
        type=int,
        default=40,
        help="number of chapter scripts to generate (default: %(default)s)",
    )
    demo.add_argument(
        "--seed", type=int, default=7, help="the emulator's seed (default: %(default)s)"
    )
    demo.add_argument(
        "--real",
        action="store_true",
        help="send the batch to Google with GEMINI_API_KEY instead (spends quota)",
    )
    sub.add_parser("emulator", help=COMMANDS["emulator"], add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGPIPE"):  # `scriptgen demo | head` ends quietly, as a filter should
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["emulator"]:
        from .emulator.__main__ import main as emulator_main

        return emulator_main(argv[1:], prog="scriptgen emulator")
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    return 2


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .engine.errors import ScriptgenError

    if args.requests < 1:
        print("scriptgen demo: --requests must be at least 1", file=sys.stderr)
        return 2
    try:
        results = run_demo(args.requests, real=args.real, out=sys.stdout, seed=args.seed)
    except ScriptgenError as exc:
        print(f"scriptgen demo: {exc}", file=sys.stderr)
        return 1
    return 0 if results.succeeded else 1


if __name__ == "__main__":
    raise SystemExit(main())
