"""`scriptgen stats`, `batches`, `models` and `limits`: the call log, the catalogue and the limits
remembered for this endpoint and key, as text tables; `migrate` brings an older log's schema up
to date.

None of them creates a log file that is not there, and only `migrate` and `limits --forget`
write to one: the others open it read-only, so a log on a read-only place can be read, and they
refuse an older log rather than migrate it. The tables are pandas frames printed with `table()`,
which `run` uses for its summary too. The library is imported inside each function, so
`scriptgen --help` stays quick.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Database

DB_HELP = "the call log file (default: $SCRIPTGEN_DB, else ./scriptgen.duckdb)"
HELP = {
    "stats": "print the call log's usage report (per operation and model; real and simulated "
    "spend apart) and the last batches",
    "batches": "list the last batches in the call log, newest first, with their state",
    "models": "list the model catalogue: limits, prices, and what each model used just now",
    "limits": "list the rate limits learned and remembered for this endpoint and API key (a "
    "later batch starts from them), or forget them",
    "migrate": "bring the call log's schema up to date (the reading commands never change it)",
}
TIER_HELP = (
    "the catalogue's limits for this tier: free or tier1 (default: $SCRIPTGEN_TIER, else the "
    "catalogue's, free)"
)
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
    "simulated",
    "models",
]


def add_parsers(sub: Any) -> None:
    stats = sub.add_parser(
        "stats",
        help=HELP["stats"],
        description=HELP["stats"] + "; with --batch, also that batch's summary and errors.",
        epilog="examples: scriptgen stats --since 1h; scriptgen stats --batch 3f2a9c0d1e4b",
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
        "--batch",
        metavar="ID",
        help="also print this batch's summary and error breakdown (default: none)",
    )
    batches = sub.add_parser(
        "batches",
        help=HELP["batches"],
        description=HELP["batches"],
        epilog="example: scriptgen batches -n 5 --db calls.duckdb",
    )
    batches.add_argument("--db", metavar="PATH", help=DB_HELP)
    batches.add_argument(
        "-n",
        "--limit",
        type=int,
        default=20,
        help="how many batches to list (default: %(default)s)",
    )
    models = sub.add_parser(
        "models",
        help=HELP["models"],
        description=HELP["models"]
        + " (requests sent this minute and today, at the endpoint $GOOGLE_GEMINI_BASE_URL or "
        "Google, per the call log) and, under `learned`, the limits remembered for that "
        "endpoint and $GEMINI_API_KEY. Prices are USD per 1M tokens; limits are the tier's "
        "(--tier, $SCRIPTGEN_TIER: free, the default, or tier1), or $SCRIPTGEN_CATALOGUE's.",
        epilog="example: scriptgen models --tier tier1 --db calls.duckdb",
    )
    models.add_argument("--db", metavar="PATH", help=DB_HELP)
    models.add_argument("--tier", metavar="TIER", help=TIER_HELP)
    limits = sub.add_parser(
        "limits",
        help=HELP["limits"],
        description=HELP["limits"] + ". The engine learns a model's limits from the service "
        "(stated in a 429, lowered by 429s, raised while no 429 comes) and keeps them per "
        "endpoint ($GOOGLE_GEMINI_BASE_URL, else Google), API key fingerprint (of "
        "$GEMINI_API_KEY or $GOOGLE_API_KEY; never the key), model and metric, for 7 days.",
        epilog="examples: scriptgen limits; scriptgen limits --forget gemini-3.8-flash; "
        "scriptgen limits --all --forget-all",
    )
    limits.add_argument("--db", metavar="PATH", help=DB_HELP)
    forget = limits.add_mutually_exclusive_group()
    forget.add_argument(
        "--forget", metavar="MODEL", help="forget MODEL's remembered limits (default: none)"
    )
    forget.add_argument(
        "--forget-all", action="store_true", help="forget every model's remembered limits"
    )
    limits.add_argument(
        "--all",
        action="store_true",
        help="every endpoint and key in the call log, not only this one",
    )
    migrate = sub.add_parser(
        "migrate",
        help=HELP["migrate"],
        description=HELP["migrate"] + ". Writing to a log (a batch) migrates it too; stats, "
        "batches and models read it as it is and ask for this when it is older.",
        epilog="example: scriptgen migrate --db calls.duckdb",
    )
    migrate.add_argument("--db", metavar="PATH", help=DB_HELP)


def _moment(text: str) -> datetime:
    """`--since`: parsed by the library; its complaint becomes argparse's."""
    from ..engine.errors import ConfigurationError
    from ..store.queries import parse_time

    try:
        return parse_time(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def stats(args: argparse.Namespace) -> int:
    return _read_log("stats", args.db, lambda db: _stats_sections(db, args))


def batches(args: argparse.Namespace) -> int:
    if args.limit < 1:
        print("scriptgen batches: --limit must be at least 1", file=sys.stderr)
        return 2
    return _read_log("batches", args.db, lambda db: _batch_sections(db, args.limit))


def models(args: argparse.Namespace) -> int:
    from ..commands import DB_OPTION, models_frame, quota_identity, with_tier
    from ..engine.errors import ConfigurationError, ScriptgenError
    from ..store import default_db_path, open_database

    path = args.db or default_db_path()
    try:
        catalogue = with_tier({}, args.tier).get("catalogue")
        identity = quota_identity({})  # a key no HTTP header can carry is refused here
    except ConfigurationError as exc:
        return _usage_error("models", exc)
    try:
        exists = Path(path).exists()  # never create one
        db = open_database(path, read_only=True, named_by=DB_OPTION) if exists else None
        frame = models_frame(db, catalogue)
    except ConfigurationError as exc:  # a --db that is no call log this version reads
        return _usage_error("models", exc)
    except ScriptgenError as exc:
        print(f"scriptgen models: {exc}", file=sys.stderr)
        return 1
    print(f"learned: the limits remembered for {identity}")
    print(table(frame.convert_dtypes()))  # limits as whole numbers
    return 0


def limits(args: argparse.Namespace) -> int:
    from ..commands import limits_action, quota_identity
    from ..engine.errors import ConfigurationError

    try:
        identity = quota_identity({}, every=args.all)  # a malformed key is refused here
    except ConfigurationError as exc:
        return _usage_error("limits", exc)

    def sections(db: Database) -> list[Section]:
        said, frame = limits_action(db, identity, forget=args.forget, forget_all=args.forget_all)
        return [(said + ":", frame)]

    forgets = args.forget is not None or args.forget_all
    return _read_log("limits", args.db, sections, read_only=not forgets)


def migrate(args: argparse.Namespace) -> int:
    """Open the log for writing, which applies the migrations it has not seen yet."""

    def sections(db: Database) -> list[Section]:
        import pandas as pd

        from ..store.database import schema_version

        return [("schema (current):", pd.DataFrame({"version": [schema_version()]}))]

    return _read_log("migrate", args.db, sections, read_only=False)


def _usage_error(command: str, error: Exception) -> int:
    """A configuration error (a bad --tier, a malformed API key, a --db that is no call log) in
    one line: status 2."""
    print(f"scriptgen {command}: {' '.join(str(error).split())}", file=sys.stderr)
    return 2


def _read_log(
    command: str,
    db_arg: str | None,
    sections: Callable[[Database], list[Section]],
    *,
    read_only: bool = True,
) -> int:
    """Open an existing call log (never create one; read-only unless the command writes), run
    the queries, print their tables."""
    from ..commands import DB_OPTION
    from ..engine.errors import ConfigurationError, ScriptgenError
    from ..store import default_db_path, open_database

    path = db_arg or default_db_path()
    if not Path(path).exists():  # opening it would create an empty log
        print(
            f"scriptgen {command}: no call log at {path} yet; run a batch first or pass --db",
            file=sys.stderr,
        )
        return 1
    try:
        db = open_database(path, read_only=read_only, named_by=DB_OPTION)
        tables = sections(db)
    except ConfigurationError as exc:  # a --db that is no call log, an unknown --batch, ...
        return _usage_error(command, exc)
    except ScriptgenError as exc:  # a damaged log, one held too long
        print(f"scriptgen {command}: {exc}", file=sys.stderr)
        return 1
    print(f"call log: {db.path}")
    for title, frame in tables:
        print(f"\n{title}")
        print(table(frame))
    return 0


def _stats_sections(db: Database, args: argparse.Namespace) -> list[Section]:
    import pandas as pd

    from ..store import queries

    since = "all time" if args.since is None else f"since {args.since.isoformat(' ', 'seconds')}"
    usage = queries.usage_report(db, since=args.since)
    sections = [*_usage_sections(usage, since), *_batch_sections(db, 20)]
    if args.batch:
        from ..commands import known_batch

        known_batch(db, args.batch, "`scriptgen batches`")
        summary = queries.batch_summary(db, args.batch).iloc[0]
        fields = pd.DataFrame(
            {"field": summary.index, "value": [cell(str(f), v) for f, v in summary.items()]}
        )
        sections += [
            (f"batch {args.batch}:", fields),
            (f"errors in batch {args.batch}:", queries.errors(db, args.batch)),
        ]
    return sections


def _usage_sections(usage: pd.DataFrame, since: str) -> list[Section]:
    """The usage report as two tables, so an emulator's figures are never read as spend: real
    (Google, or another real endpoint), then simulated when there is any."""
    simulated = usage["simulated"].astype(bool)
    sections = [(f"real usage per operation and model, {since}:", usage[~simulated])]
    if simulated.any():
        title = f"simulated usage per operation and model (emulators: nothing was spent), {since}:"
        sections.append((title, usage[simulated]))
    return [(title, frame.drop(columns="simulated")) for title, frame in sections]


def _batch_sections(db: Database, limit: int) -> list[Section]:
    from ..store import queries

    recent = queries.batches(db, limit)[BATCH_COLUMNS]
    return [(f"last batches (newest first, at most {limit}):", recent)]


def table(frame: pd.DataFrame) -> str:
    import pandas as pd

    if frame.empty:
        return "  (none)"
    # Each value through cell() first: to_string's formatters skip missing values.
    shown = {column: [cell(str(column), v) for v in frame[column]] for column in frame.columns}
    return pd.DataFrame(shown).to_string(index=False)


def cell(column: str, value: Any) -> str:
    """A value as printed: costs to six decimals (`unknown` without a price), other floats to
    one, times to the second."""
    import pandas as pd

    if pd.isna(value):
        return "unknown" if "cost" in column else "-"  # a cost of None: the price is unknown
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        if "per_1m" in column:  # a price: as written in the catalogue
            return f"{value:g}"
        return f"{value:.6f}" if "cost" in column else f"{value:.1f}"
    return str(value)
