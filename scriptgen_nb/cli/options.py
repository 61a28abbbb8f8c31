"""The flags of `scriptgen run` and `scriptgen retry`, with their help: defaults, meaning and
examples. The flags are those of the `%%scriptgen batch` magic (their values mean the same, via
`commands.py`), plus what a terminal needs: INPUT formats, `--out`, the bar and exit statuses.
Imports no part of the library that loads google-genai or duckdb, so `--help` stays quick.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from ..engine.errors import ConfigurationError
from .log import DB_HELP, TIER_HELP

CACHE_CHOICES = ("use", "refresh", "off")  # store.session.CACHE_MODES, without importing duckdb
RUN_HELP = "run a batch of prompts from a JSONL, CSV or text file (or stdin) and write the results"
RETRY_HELP = "re-run the failed and not-run requests of a batch that a new attempt can fix"
RUN_EXAMPLES = """\
INPUT formats (by suffix, or --format):
  .jsonl   one JSON object per line with a request's fields: prompt (required), id, system,
           model, temperature, max_output_tokens, metadata, ...; with --template, the line's
           values fill the template instead
  .csv     a header row; a `prompt` column (and optionally `id`; the other columns come back
           beside the results), or --template filling {column}s from each row
  other    text: one prompt per line (blank lines skipped), or blocks between `---` lines
  -        stdin (JSONL when the first character is `{`, else text; or --format csv)

The endpoint: GEMINI_API_KEY (or GOOGLE_API_KEY) for Google; GOOGLE_GEMINI_BASE_URL for another
endpoint such as `scriptgen emulator`; --emulator starts a local one (nothing is spent).

examples:
  scriptgen run prompts.txt --out results.jsonl
  scriptgen run chapters.csv --template "Write about {topic} for {audience}" --out scripts.csv
  scriptgen run requests.jsonl --models gemini-3.5-flash-lite,gemini-2.5-flash-lite \\
      --concurrency 8 --budget 0.50 --out results.parquet
  scriptgen run requests.jsonl --schema myschemas:Script --dry-run
  scriptgen run requests.jsonl --mode auto --deadline 2h --dry-run   # the plan, nothing sent
  scriptgen run requests.jsonl --mode batch_api --out results.jsonl  # half price; waits
  cat prompts.txt | scriptgen run - --emulator --quiet --out -

exit status: 0 all succeeded, 1 some failed (0 with --allow-failures), 2 usage error,
  130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (each: the calls in flight recorded, the results so far
  written, `scriptgen retry BATCH_ID` runs the rest)
"""
RETRY_EXAMPLES = """\
The requests are rebuilt from the call log (prompt, system, settings, schema), changed as the
settings flags say, and sent again (the cache is refreshed, not served), on the batch's own
models unless --models says otherwise (which also unpins a request pinned to one model).

Sent again by default, the failures a new attempt can fix: with the same settings (rate_limited,
quota_exhausted, server_error, timeout, connection, malformed_response, invalid_json,
unexpected_finish, billing, not_run), or with a setting changed for them (truncated: a higher
--max-tokens; too_large, not_found: --models; invalid_request: any setting). The rest (blocked,
unsupported_language, permission_denied, and those whose change was not made) are left out, and
a line on stderr says how many of each kind and what would include them; --all sends them too.

examples:
  scriptgen retry 3f2a9c0d1e4b --out fixed.jsonl
  scriptgen retry --db calls.duckdb                   # the latest batch in calls.duckdb
  scriptgen retry 3f2a9c0d1e4b --max-tokens 2000      # truncated answers too, with more room
  scriptgen retry 3f2a9c0d1e4b --all --models gemini-3.8-flash

exit status: 0 all succeeded, 1 some failed (0 with --allow-failures), 2 usage error,
  130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (each: the calls in flight recorded, the results so far
  written, `scriptgen retry BATCH_ID` runs the rest)
"""


def add_parsers(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help=RUN_HELP,
        description=textwrap.fill(
            RUN_HELP + ", paced to the models' rate limits, every attempt logged in the call "
            "log. The options are those of the %%scriptgen batch magic.",
            88,
        ),
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("input", metavar="INPUT", help="a .jsonl, .csv or text file, or - for stdin")
    given = run.add_argument_group("input and requests")
    given.add_argument(
        "--format",
        choices=("auto", "jsonl", "csv", "text"),
        default="auto",
        help="how to read INPUT (default: auto, by its suffix; stdin: JSONL or text)",
    )
    given.add_argument(
        "-t",
        "--template",
        metavar="TEXT|FILE",
        help="a prompt template filled per CSV/JSONL row with {column} ({{ }} for braces); "
        "text holding { is the template, else a file holding it (default: none)",
    )
    given.add_argument(
        "--operation",
        default="GENERATE",
        help="the operation name the call log files requests under (default: %(default)s)",
    )
    given.add_argument("--project", metavar="ID", help="the project id for the log (default: none)")
    _settings_arguments(given, retry=False)
    _batch_arguments(run, retry=False)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the estimate (tokens, cost, the limit-bound time), or with --mode "
        "batch_api|auto the plan (each option's cost and time, and the choice); send nothing",
    )
    output_arguments(run)

    retry = sub.add_parser(
        "retry",
        help=RETRY_HELP,
        description=textwrap.fill(RETRY_HELP + " (as %scriptgen retry does in a notebook).", 88),
        epilog=RETRY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    retry.add_argument(
        "batch_id",
        metavar="BATCH_ID",
        nargs="?",
        help="the batch to retry, as `scriptgen batches` lists it (default: the latest batch)",
    )
    retry.add_argument(
        "--failed",
        action="store_true",
        help="re-run the failures a new attempt can fix (the default; accepted for clarity)",
    )
    retry.add_argument(
        "--all",
        action="store_true",
        help="re-run every failed and not-run request, even those a new attempt meets with the "
        "same answer (blocked, ...) or that need a setting changed (default: only those it can "
        "fix)",
    )
    _settings_arguments(
        retry.add_argument_group("settings changed for the requests sent again"), retry=True
    )
    _batch_arguments(retry, retry=True)
    output_arguments(retry)


def _settings_arguments(group: Any, *, retry: bool) -> None:
    """The request settings `run` gives every request, and `retry` changes for the requests it
    sends again (there, a setting not given stays each request's own, as logged)."""
    model = "the model's"

    def default(usual: str) -> str:
        return "(default: " + ("the request's own, as logged)" if retry else f"{usual})")

    group.add_argument(
        "--system", metavar="TEXT", help="a system instruction for every request " + default("none")
    )
    group.add_argument(
        "--schema",
        metavar="FILE|MODULE:CLASS",
        help="structured output: a JSON Schema file, or module:Class naming a Pydantic model "
        "(importable from here); answers are parsed into `data` " + default("none, plain text"),
    )
    group.add_argument("--temperature", type=float, help="sampling temperature " + default(model))
    group.add_argument(
        "--top-p",
        type=float,
        dest="top_p",
        metavar="P",
        help="nucleus sampling: the probability mass sampled from, 0 to 1 " + default(model),
    )
    group.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="the sampling seed, for answers that repeat " + default("none"),
    )
    truncated = (
        "; a truncated answer is sent again only when N is above what it had" if retry else ""
    )
    group.add_argument(
        "--max-tokens",
        type=int,
        dest="max_output_tokens",
        metavar="N",
        help=f"max output tokens per request{truncated} " + default(model),
    )
    group.add_argument(
        "--thinking-level",
        metavar="LEVEL",
        help="how much Gemini 3.x models think: minimal, low, medium or high "
        + default(f"{model}; 2.5 models take a thinking budget instead"),
    )


def _batch_arguments(parser: argparse.ArgumentParser, *, retry: bool) -> None:
    batch = parser.add_argument_group("the batch")
    batch.add_argument(
        "-m",
        "--models",
        "--model",
        dest="models",
        metavar="A,B",
        help="a model or a comma-separated ladder, most preferred first (default: "
        + ("the batch's own ladder)" if retry else "the catalogue's ladder, $SCRIPTGEN_MODELS)"),
    )
    batch.add_argument(
        "-c",
        "--concurrency",
        type=_concurrency,  # no default here: argparse would convert it, loading the library
        metavar="auto|seed|N",
        help="auto paces by the rate limits; N also caps requests in flight; seed is the "
        "seed's fixed formula, unpaced (default: auto)",
    )
    if not retry:
        batch.add_argument(
            "--cache",
            choices=CACHE_CHOICES,
            default="use",
            help="use: serve answers already in the call log; refresh: ask again; off: "
            "neither read nor write them (default: %(default)s)",
        )
    batch.add_argument(
        "--budget",
        type=float,
        metavar="USD",
        help="stop sending before the cost would pass USD; the rest are not run (default: "
        + ("what is left of the batch's own, if it had one)" if retry else "none)"),
    )
    batch.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds per request before it is retried (default: %(default)g)",
    )
    batch.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        help="attempts per request, retries included (default: "
        + ("the batch's own)" if retry else "6)"),
    )
    batch.add_argument("--tier", metavar="TIER", help=TIER_HELP)
    batch.add_argument(
        "--quota",
        metavar="WHERE",
        help="the quota ledger this batch paces with every other process at the same key: "
        "off (pace alone), the path of a SQLite file, or a redis:// URL for many machines "
        "(default: $SCRIPTGEN_QUOTA, else a file in the user's cache directory)",
    )
    batch.add_argument("--db", metavar="PATH", help=DB_HELP)
    batch.add_argument(
        "--log-wait",
        type=float,
        metavar="S",
        help="while another process holds the call log (a long query), seconds to wait for it "
        "before sending and at the end; meanwhile the batch waits as long as it runs "
        "(default: the library's, 300)",
    )
    batch.add_argument(
        "--mode",
        choices=("live", "batch_api", "auto"),
        help="live: requests paced in real time; batch_api: Google's Batch API (half price, "
        "slower; `scriptgen jobs` lists, resumes and cancels its jobs); auto: live calls, the "
        "Batch API or a split, by --deadline. batch_api and auto show the plan (each option's "
        "cost and time, and the choice) on stderr before sending (default: the library's, live)",
    )
    batch.add_argument(
        "--deadline",
        metavar="WHEN",
        help="with --mode auto: how long the batch may take (90 seconds, 30m, 2h, 1d); auto "
        "chooses live calls or the Batch API by it (default: the library's)",
    )
    batch.add_argument(
        "--emulator",
        action="store_true",
        help="run on a local Gemini emulator started for this command (simulated answers, "
        "compressed quota windows, nothing spent) instead of Google",
    )


def output_arguments(parser: argparse.ArgumentParser, *, bar: bool = True) -> None:
    out = parser.add_argument_group("output")
    out.add_argument(
        "-o",
        "--out",
        metavar="FILE",
        help="write every result to FILE: .jsonl, .csv or .parquet by its suffix, written "
        "whole or not at all, the input row's fields first (input_NAME when a result has "
        "NAME); - writes JSONL to stdout (default: print a table)",
    )
    out.add_argument(
        "--allow-failures",
        action="store_true",
        help="exit 0 even when some requests failed or did not run (default: exit 1)",
    )
    shown = out.add_mutually_exclusive_group()
    shown.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar, plan or summary on stderr (errors are still shown)",
    )
    if not bar:
        return
    shown.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal (default: only on one)",
    )


def _concurrency(text: str) -> int | str:
    from ..commands import parse_concurrency

    try:
        return parse_concurrency(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--concurrency ")) from None
