"""`scriptgen run INPUT` and `scriptgen retry BATCH_ID --failed`: batches from a terminal.

`run` reads prompts (`inputs.py`), turns the flags into the same batch options as the
`%%scriptgen batch` magic (`commands.py`), shows a tqdm bar on stderr (`bar.py`) and writes the
results (`outputs.py`) or prints a table. `retry` re-runs a logged batch's failed and not-run
requests (`commands.retry_plan`, as `%scriptgen retry --failed`). Exit status: 0 when every
request succeeded, 1 when any failed (0 with `--allow-failures`), 2 for a usage or
configuration error (nothing sent, nothing written), 130 after Ctrl-C (the results so far
written). Errors are one line on stderr, naming the problem and what to do.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.errors import (
    BatchInterrupted,
    ConfigurationError,
    MissingApiKeyError,
    ScriptgenError,
)
from .log import DB_HELP, table

if TYPE_CHECKING:  # the library is imported when a command runs, so `--help` stays quick
    from ..engine.values import GenerationRequest
    from ..progress import ProgressState
    from ..results import ResultList

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
ENV_MODELS = "SCRIPTGEN_MODELS"  # the default ladder, as the magic's default_models reads it
CACHE_CHOICES = ("use", "refresh", "off")  # store.session.CACHE_MODES, without importing duckdb
RUN_HELP = "run a batch of prompts from a JSONL, CSV or text file (or stdin) and write the results"
RETRY_HELP = "re-run the failed and not-run requests of a batch in the call log"
RUN_EXAMPLES = """\
INPUT formats (by suffix, or --format):
  .jsonl   one JSON object per line with a request's fields: prompt (required), id, system,
           model, temperature, max_output_tokens, metadata, ...; with --template, the line's
           values fill the template instead
  .csv     a header row; a `prompt` column (and optionally `id`), or --template filling
           {column}s from each row
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
  cat prompts.txt | scriptgen run - --emulator --quiet --out -

exit status: 0 all succeeded, 1 some failed (0 with --allow-failures), 2 usage error, 130 Ctrl-C
"""
RETRY_EXAMPLES = """\
The requests are rebuilt from the call log (prompt, system, settings, schema) and sent again
(the cache is refreshed, not served), on the batch's own models unless --models says otherwise.

examples:
  scriptgen retry 3f2a9c0d1e4b --failed --out fixed.jsonl
  scriptgen retry --failed --db calls.duckdb          # the latest batch in calls.duckdb

exit status: 0 all succeeded, 1 some failed (0 with --allow-failures), 2 usage error, 130 Ctrl-C
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
    given.add_argument(
        "--system", metavar="TEXT", help="a system instruction for every request (default: none)"
    )
    given.add_argument(
        "--schema",
        metavar="FILE|MODULE:CLASS",
        help="structured output: a JSON Schema file, or module:Class naming a Pydantic model "
        "(importable from here); answers are parsed into `data` (default: none, plain text)",
    )
    given.add_argument(
        "--temperature", type=float, help="sampling temperature (default: the model's)"
    )
    given.add_argument(
        "--max-tokens",
        type=int,
        dest="max_output_tokens",
        metavar="N",
        help="max output tokens per request (default: the model's)",
    )
    _batch_arguments(run, retry=False)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the estimate (tokens, cost, the limit-bound time) and send nothing",
    )
    _output_arguments(run)

    retry = sub.add_parser(
        "retry",
        help=RETRY_HELP,
        description=textwrap.fill(
            RETRY_HELP + " (as %scriptgen retry --failed does in a notebook).", 88
        ),
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
        required=True,
        help="re-run the failed and not-run requests (required: the one kind of retry so far)",
    )
    _batch_arguments(retry, retry=True)
    _output_arguments(retry)


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
        type=_concurrency,
        default="auto",
        metavar="auto|seed|N",
        help="auto paces by the rate limits; N also caps requests in flight; seed is the "
        "seed's fixed formula, unpaced (default: %(default)s)",
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
        help="stop sending before the cost would pass USD; the rest are not run (default: none)",
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
        default=6,
        metavar="N",
        help="attempts per request, retries included (default: %(default)s)",
    )
    batch.add_argument("--db", metavar="PATH", help=DB_HELP)
    batch.add_argument(
        "--mode",
        choices=("live", "batch_api", "auto"),
        help="live: requests paced in real time; batch_api: Google's Batch API (half price, "
        "slower); auto: the library chooses (default: the library's, live)",
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


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output")
    out.add_argument(
        "-o",
        "--out",
        metavar="FILE",
        help="write every result to FILE: .jsonl, .csv or .parquet by its suffix, written "
        "whole or not at all; - writes JSONL to stdout (default: print a table)",
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
        help="no progress bar and no summary on stderr (errors are still shown)",
    )
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


# --- running -------------------------------------------------------------------------------


@dataclass
class Work:
    """What a command will send: the requests, options their source implies, or why nothing."""

    requests: list[GenerationRequest]
    options: dict[str, Any] = field(default_factory=dict)
    nothing: str | None = None  # a reason to send nothing and succeed


def run(args: argparse.Namespace) -> int:
    def prepare() -> Work:
        from .inputs import load_schema, read_prompts

        prompts = read_prompts(args.input, args.format, args.template)
        schema = load_schema(args.schema) if args.schema else None
        from ..api import create_batch_requests  # only now: it loads google-genai

        try:
            made = create_batch_requests(
                prompts.items,
                operation=args.operation,
                project_id=args.project,
                temperature=args.temperature,
                system=args.system,
                schema=schema,
                max_output_tokens=args.max_output_tokens,
            )
        except ConfigurationError as exc:
            raise ConfigurationError(prompts.locate(str(exc))) from None
        return Work(list(made), {"cache": args.cache})

    return _batch("run", args, prepare)


def retry(args: argparse.Namespace) -> int:
    def prepare() -> Work:
        from ..commands import latest_batch, retry_plan
        from ..store import CallStore, default_db_path

        path = args.db or default_db_path()
        if not Path(path).exists():  # opening it would create an empty log
            raise ConfigurationError(f"no call log at {path}; pass --db with the batch's log.")
        log = CallStore(path)
        batch_id = args.batch_id or latest_batch(log, "run `scriptgen run` first")
        plan = retry_plan(log, batch_id)
        nothing = None if plan.requests else f"batch {batch_id} has no failed or not-run requests."
        return Work(plan.requests, plan.options(), nothing)

    return _batch("retry", args, prepare)


def _batch(command: str, args: argparse.Namespace, prepare: Callable[[], Work]) -> int:
    """Check everything, run the batch, deliver the results; the exit status."""

    def fail(message: str) -> int:
        print(f"scriptgen {command}: {message}", file=sys.stderr)
        return USAGE

    with ExitStack() as stack:
        try:
            if args.out is not None:
                from .outputs import output_path

                output_path(args.out)
            work = prepare()
            if work.nothing is not None:
                print(f"scriptgen {command}: {work.nothing}", file=sys.stderr)
                return OK
            from ..commands import batch_options, estimate_requests

            given = work.options
            models = args.models or given.pop("models", None) or os.environ.get(ENV_MODELS)
            # --mode / --deadline reach the library only when given, so the command works
            # with a library that has no such options yet; one that refuses them says so.
            passed = {k: v for k, v in (("mode", args.mode), ("deadline", args.deadline)) if v}
            options = batch_options(
                models=models,
                concurrency=args.concurrency,
                db=args.db,
                budget_usd=args.budget,
                timeout_s=args.timeout,
                max_attempts=args.max_attempts,
                **given,
                **passed,
            )
            if args.emulator:
                options.update(_local_emulator(stack, quiet=args.quiet))
            elif not _has_key(options):
                raise MissingApiKeyError()  # before the library would create the call log
            if getattr(args, "dry_run", False):
                print(estimate_requests(work.requests, options))
                return OK
            results, interrupted, state = _generate(work.requests, options, args)
        except MissingApiKeyError:
            return fail(
                "no Gemini API key: set GEMINI_API_KEY (or GOOGLE_API_KEY), point "
                "GOOGLE_GEMINI_BASE_URL at an emulator (`scriptgen emulator`), or add "
                "--emulator to run on a local one."
            )
        except ConfigurationError as exc:
            return fail(_one_line(str(exc)))
        except KeyboardInterrupt:
            print(f"scriptgen {command}: interrupted before anything was sent.", file=sys.stderr)
            return INTERRUPTED
        return _deliver(command, args, results, interrupted, state)


def _has_key(options: dict[str, Any]) -> bool:
    from ..wiring import ENV_KEYS

    return bool(options.get("api_key") or any(os.environ.get(k) for k in ENV_KEYS))


def _local_emulator(stack: ExitStack, *, quiet: bool) -> dict[str, Any]:
    from ..jupyter.endpoint import LocalEmulator, auto_config

    local = LocalEmulator()
    emulator = local.start(auto_config(), chosen=True)
    stack.callback(local.stop)
    endpoint, _ = local.options()
    if not quiet:
        print(
            f"using a local Gemini emulator at {emulator.base_url} (simulated answers; a "
            f"'minute' lasts {emulator.config.minute_s:g}s)",
            file=sys.stderr,
        )
    return endpoint


def _generate(
    requests: Sequence[GenerationRequest], options: dict[str, Any], args: argparse.Namespace
) -> tuple[ResultList, BatchInterrupted | None, ProgressState]:
    """Run the batch with the bar (or a bare `ProgressState` for the summary line)."""
    from ..api import batch_generate
    from ..progress import ProgressState, format_summary
    from ..results import ResultList

    bar = None
    if not args.quiet and (args.progress or sys.stderr.isatty()):
        from .bar import TqdmProgress

        bar = TqdmProgress(total=len(requests))
    state = bar.state if bar is not None else ProgressState(total=len(requests))
    listener = bar if bar is not None else state
    try:
        return batch_generate(requests, listeners=[listener], **options), None, state
    except BatchInterrupted as stopped:  # Ctrl-C, or the call log failed mid-batch
        return ResultList(stopped.results), stopped, state
    finally:
        if bar is not None:
            bar.close()
        elif not args.quiet and state.snapshot().status != "waiting":
            print(format_summary(state.snapshot()), file=sys.stderr)


def _deliver(
    command: str,
    args: argparse.Namespace,
    results: ResultList,
    interrupted: BatchInterrupted | None,
    state: ProgressState,
) -> int:
    from .outputs import summary_table, write_results

    try:
        if args.out is not None:
            write_results(results, args.out)
            if args.out != "-" and not args.quiet:
                print(f"wrote {len(results)} results to {args.out}", file=sys.stderr)
        else:
            print(table(summary_table(results)))
    except (OSError, ScriptgenError) as exc:
        print(f"scriptgen {command}: cannot write {args.out}: {exc}", file=sys.stderr)
        return FAILED
    if interrupted is not None:
        print(f"scriptgen {command}: {_one_line(str(interrupted))}", file=sys.stderr)
        return INTERRUPTED if type(interrupted) is BatchInterrupted else FAILED
    failed = results.failed
    if not failed:
        return OK
    batch_id = state.snapshot().batch_id
    again = f"; re-run them with `scriptgen retry {batch_id} --failed`" if batch_id else ""
    kinds = sorted({r.error.kind for r in failed if r.error is not None})
    print(
        f"scriptgen {command}: {len(failed)} of {len(results)} requests did not succeed "
        f"({', '.join(kinds)}){again}",
        file=sys.stderr,
    )
    return OK if args.allow_failures else FAILED


def _one_line(message: str) -> str:
    return " ".join(message.split())
