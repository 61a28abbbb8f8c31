"""The `scriptgen` command: `run` and `retry` (batches from a terminal), `jobs` (Gemini Batch API
jobs: list, resume, cancel), `demo` (a batch on the embedded emulator), `emulator` (serve it),
`stats`, `batches`, `models` and `limits` (read the log, the catalogue and the limits learned),
`migrate` (bring an older log's schema up to date).

This module only assembles the parser and dispatches: `run.py` runs batches (its flags in
`options.py`, reading inputs in `inputs.py`, drawing the tqdm bar in `bar.py`, writing results
in `outputs.py`), `jobs.py` lists, resumes and cancels Batch API jobs, `log.py` reads the call
log and the catalogue, and shows and forgets learned limits. Nothing here holds logic the
library lacks, and the library is imported inside each command, so `--help` stays quick.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn

from .. import __version__
from . import jobs, log, options, run

DEMO_HELP = "run the demo batch (chapter scripts) on the embedded emulator; --real uses Google"
EMULATOR_HELP = "serve the Gemini-compatible emulator (see `scriptgen emulator --help`)"


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line: the command, the problem, where to read more; and
    that takes options only as spelled in full (`--max` is not taken for `--max-tokens`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scriptgen",
        description="Run large batches of Gemini generation requests, paced to your rate limits.",
        epilog="`scriptgen COMMAND --help` describes each command, with examples.",
    )
    parser.add_argument("--version", action="version", version=f"scriptgen_nb {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    options.add_parsers(sub)
    demo = sub.add_parser(
        "demo",
        help=DEMO_HELP,
        description=DEMO_HELP,
        epilog="examples: scriptgen demo; scriptgen demo -n 10 --seed 3",
    )
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
        help="send the batch to Google with GEMINI_API_KEY instead (spends quota; default: the "
        "emulator)",
    )
    sub.add_parser("emulator", help=EMULATOR_HELP, add_help=False)
    log.add_parsers(sub)
    jobs.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `scriptgen` command and return its exit status.

    A reader that stops early (`scriptgen stats | head`) ends the command quietly with status 1,
    as Python's documentation advises for a closed pipe. The process's SIGPIPE handling is left
    alone: restoring the default action would let any later write to a closed socket (the
    emulator's connections, or a test calling `main` in-process) kill the whole interpreter.
    """
    try:
        status = _dispatch(sys.argv[1:] if argv is None else argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["emulator"]:
        from ..emulator.__main__ import main as emulator_main

        return emulator_main(argv[1:], prog="scriptgen emulator")
    args = _parser().parse_args(argv)
    commands = {
        "run": run.run,
        "retry": run.retry,
        "demo": _demo,
        "stats": log.stats,
        "batches": log.batches,
        "models": log.models,
        "limits": log.limits,
        "migrate": log.migrate,
        "jobs": jobs.jobs,
    }
    return commands[args.command](args)


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ..engine.errors import BatchInterrupted, ScriptgenError
    from .signals import TerminationSignals

    if args.requests < 1:
        print("scriptgen demo: --requests must be at least 1", file=sys.stderr)
        return 2
    with TerminationSignals() as stop:
        try:
            results = run_demo(args.requests, real=args.real, out=sys.stdout, seed=args.seed)
        except BatchInterrupted as stopped:  # Ctrl-C, SIGTERM, SIGHUP: in-flight calls recorded
            print(
                f"scriptgen demo: {stop.stopped()} after {stopped.done} of {len(stopped.results)} "
                "requests; every attempt is in the call log.",
                file=sys.stderr,
            )
            return stop.exit_status(130)
        except ScriptgenError as exc:
            print(f"scriptgen demo: {exc}", file=sys.stderr)
            return 1
    return 0 if results.succeeded else 1
