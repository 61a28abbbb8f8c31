"""The `scriptgen` command: `demo` (a batch on the embedded emulator), `emulator` (serve it),
`stats` and `batches` (read the call log).

Each subcommand parses its own arguments and calls into the library; nothing here holds logic
the library lacks. The library is imported inside each command, so `--help` stays quick.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    import pandas as pd

    from .store import Database

COMMANDS = {
    "demo": "run the demo batch (chapter scripts) on the embedded emulator; --real uses Google",
    "emulator": "serve the Gemini-compatible emulator (see `scriptgen emulator --help`)",
    "stats": "print the call log's usage report (per operation and model) and the last batches",
    "batches": "list the last batches in the call log, newest first, with their state",
}
DB_HELP = "the call log file (default: $SCRIPTGEN_DB, else ./scriptgen.duckdb)"


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
    stats = sub.add_parser(
        "stats",
        help=COMMANDS["stats"],
        description=COMMANDS["stats"] + "; with --batch, also that batch's summary and errors.",
    )
    stats.add_argument("--db", metavar="PATH", help=DB_HELP)
    stats.add_argument(
        "--since",
        type=_moment,
        metavar="WHEN",
        help="count only calls made since WHEN: a duration ago (30m, 1h, 2d) or an ISO "
        "date/time (2026-03-02, 2026-03-02T10:00+01:00; naive means UTC); default: all",
    )
    stats.add_argument(
        "--batch", metavar="ID", help="also print this batch's summary and error breakdown"
    )
    batches = sub.add_parser("batches", help=COMMANDS["batches"], description=COMMANDS["batches"])
    batches.add_argument("--db", metavar="PATH", help=DB_HELP)
    batches.add_argument(
        "-n",
        "--limit",
        type=int,
        default=20,
        help="how many batches to list (default: %(default)s)",
    )
    return parser


def _moment(text: str) -> datetime:
    """`--since`: parsed by the library; its complaint becomes argparse's."""
    from .engine.errors import ConfigurationError
    from .store.queries import parse_time

    try:
        return parse_time(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


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
    if args.command == "stats":
        return _read_log("stats", args.db, lambda db: _stats_sections(db, args))
    if args.command == "batches":
        if args.limit < 1:
            print("scriptgen batches: --limit must be at least 1", file=sys.stderr)
            return 2
        return _read_log("batches", args.db, lambda db: _batch_sections(db, args.limit))
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


Section = tuple[str, "pd.DataFrame"]  # a title and its table
BATCH_COLUMNS = [
    "batch_id",
    "state",
    "operation",
    "started_at",
    "duration_s",
    "request_count",
    "success_count",
    "failure_count",
    "not_run_count",
    "cached_count",
    "cost",
    "models",
]


def _read_log(
    command: str, db_arg: str | None, sections: Callable[[Database], list[Section]]
) -> int:
    """Open an existing call log (never create one), run the queries, print their tables."""
    from .engine.errors import ScriptgenError
    from .store import default_db_path, open_database

    path = db_arg or default_db_path()
    if not Path(path).exists():  # opening it would create an empty log
        print(
            f"scriptgen {command}: no call log at {path} yet; run a batch first or pass --db",
            file=sys.stderr,
        )
        return 1
    try:
        db = open_database(path)
        tables = sections(db)
    except ScriptgenError as exc:
        print(f"scriptgen {command}: {exc}", file=sys.stderr)
        return 1
    print(f"call log: {db.path}")
    for title, frame in tables:
        print(f"\n{title}")
        print(_table(frame))
    return 0


def _stats_sections(db: Database, args: argparse.Namespace) -> list[Section]:
    import pandas as pd

    from .store import queries

    since = "all time" if args.since is None else f"since {args.since.isoformat(' ', 'seconds')}"
    sections = [
        (f"usage per operation and model, {since}:", queries.usage_report(db, since=args.since)),
        *_batch_sections(db, 20),
    ]
    if args.batch:
        summary = queries.batch_summary(db, args.batch).iloc[0]
        fields = pd.DataFrame(
            {"field": summary.index, "value": [_cell(str(f), v) for f, v in summary.items()]}
        )
        sections += [
            (f"batch {args.batch}:", fields),
            (f"errors in batch {args.batch}:", queries.errors(db, args.batch)),
        ]
    return sections


def _batch_sections(db: Database, limit: int) -> list[Section]:
    from .store import queries

    recent = queries.batches(db, limit)[BATCH_COLUMNS]
    return [(f"last batches (newest first, at most {limit}):", recent)]


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "  (none)"
    formatters = {column: partial(_cell, str(column)) for column in frame.columns}
    return frame.to_string(index=False, formatters=formatters)


def _cell(column: str, value: Any) -> str:
    """A value as printed: costs to six decimals, other floats to one, times to the second."""
    import pandas as pd

    if pd.isna(value):
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.6f}" if "cost" in column else f"{value:.1f}"
    return str(value)


if __name__ == "__main__":
    raise SystemExit(main())
