"""The `%scriptgen` / `%%scriptgen` magics: batches from cells, and the call log from a line.

`%load_ext scriptgen_nb` registers `ScriptgenMagics`. The cell magic `%%scriptgen batch [options]`
turns the cell into requests (`cells.py`), runs them with the progress panel, and returns a
DataFrame (or stores it in `-o VAR`). A cell magic is a synchronous call, so by default the
batch runs on its own loop in a worker thread and the kernel's interrupt cancels it; with
`--await` an input transformer rewrites the cell into an `await` on the kernel's own loop, where
the panel's Cancel button acts mid-run (notes/jupyter.md §3.2). Line magics read the log, draw
charts, show and forget the limits learned for this endpoint and key, re-run failures, show a
project's chapters and manage the local emulator. Bad input (an option, a flag's value, a model
or a `{column}` nobody knows, a batch not in the log) is one `UsageError` line in the magic's
words, never a traceback into the library, and nbval still sees every failure. The line is
taken as typed (IPython's `$name` / `{expr}` expansion is off): a SQL query's braces and dollars
are DuckDB's, and the `--await` path, which never expanded, now reads lines as the others do.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from pydantic import BaseModel
from traitlets import Float, Unicode

from .. import commands
from ..api import (
    abatch_generate,
    batch_generate,
    planned_batch,
)
from ..batch_api.run import show_plan
from ..emulator import EmulatorConfig
from ..emulator.config import ConfigError as EmulatorConfigError
from ..engine.errors import (
    BatchInterrupted,
    ConfigurationError,
    MissingApiKeyError,
    UnknownModelError,
)
from ..engine.runner import CancelToken
from ..engine.values import GenerationRequest
from ..engine.verdict import json_schema_of
from ..flags import check_flags, request_settings
from ..projects.export import project_status
from ..projects.prompts import some_names
from ..results import ResultList
from ..store import CallLogFailed, CallStore, default_db_path
from ..store.queries import parse_time
from ..store.recorder import LOG_WAIT_S
from ..wiring import ENV_BASE_URL
from . import cells
from .endpoint import SESSION, auto_config
from .report import StatsReport

CELL_MAGIC = "%%scriptgen"
LISTER = "`%scriptgen stats`"  # the magic that lists a log's last batches
# What `%scriptgen stats` shows of each batch: the figures that matter, not pids and timings.
BATCH_COLUMNS = [
    "batch_id",
    "state",
    "operation",
    "project_id",
    "request_count",
    "success_count",
    "failure_count",
    "not_run_count",
    "cached_count",
    "cost",
    "simulated",
]


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line UsageError (which IPython shows without a traceback, and
    nbval counts as a failure), pointing at the help; options only as spelled in full (`--max`
    is not taken for `--max-tokens`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> NoReturn:
        helper = self.prog.split()[0]  # `%%scriptgen?` (or `%scriptgen?`) shows every option
        raise UsageError(f"{self.prog}: {message} (`{helper}?` lists the options)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or self.format_help())


def _batch_parser() -> _Parser:
    p = _Parser(
        prog="%%scriptgen batch",
        add_help=False,
        description=(
            "Run the cell's prompts as one batch. The cell holds prompts, one per line or blocks "
            "separated by '---' lines; with --over it is a template rendered per row."
        ),
    )
    p.add_argument("-o", "--output", metavar="VAR", help="store the results DataFrame in VAR")
    p.add_argument("--operation", default="GENERATE", help="operation name for the log")
    p.add_argument("--project", default=None, help="project id for the log")
    _settings_arguments(p, retry=False)
    p.add_argument("--over", metavar="VAR", help="a DataFrame or list of dicts; {column} fills")
    p.add_argument("--vars", action="store_true", help="fill {name} in prompts from variables")
    p.add_argument("--dry-run", action="store_true", help="estimate tokens, cost and time only")
    p.add_argument("--cache", choices=commands.CACHE_MODES, default="use")
    p.add_argument("--db", default=None, metavar="PATH", help="the call log file")
    p.add_argument(
        "--await",
        action="store_true",
        dest="awaited",
        help="run on the kernel's loop so the panel's Cancel acts mid-run",
    )
    return p


def _settings_arguments(p: _Parser, *, retry: bool) -> None:
    """The settings `%%scriptgen batch` and `%scriptgen retry` share (given: they change the
    requests a retry sends again, and the batch that sends them)."""
    p.add_argument(
        "--model",
        "--models",
        dest="model",
        metavar="A,B",
        help="a model or a comma-separated ladder (default: "
        + ("the batch's own)" if retry else "the catalogue's)"),
    )
    p.add_argument("--concurrency", default=None, help="N (cap in flight), auto (default), seed")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None, dest="top_p", metavar="P")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="the sampling seed")
    p.add_argument("--max-tokens", type=int, default=None, dest="max_output_tokens", metavar="N")
    p.add_argument(
        "--thinking-level",
        default=None,
        metavar="LEVEL",
        help="Gemini 3.x: minimal, low, medium or high (default: the model's)",
    )
    p.add_argument("--system", default=None, help="system instruction")
    p.add_argument("--schema", metavar="NAME", help="a Pydantic model or JSON Schema dict variable")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="USD",
        help="stop before the spend would cross it (default: "
        + ("what is left of the batch's own)" if retry else "none)"),
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds per request (default: ScriptgenMagics.default_timeout_s, 60)",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=None,
        metavar="N",
        help="attempts per request, retries included (default: "
        + ("the batch's own)" if retry else "6)"),
    )
    p.add_argument(
        "--quota",
        default=None,
        metavar="WHERE",
        help="the quota ledger shared with other processes: off, a SQLite file or a redis:// "
        "URL (default: SCRIPTGEN_QUOTA, else the user's cache directory)",
    )
    p.add_argument(
        "--mode",
        choices=("live", "batch_api", "auto"),
        default=None,
        help="live calls (default), Google's Batch API (half price), or auto (by --deadline)",
    )
    p.add_argument(
        "--deadline", default=None, help="for --mode auto: 90, 30m, 2h, 1d (default: batch time)"
    )
    _tier_argument(p)


def _line_parsers() -> dict[str, _Parser]:
    parsers = {}
    stats = parsers["stats"] = _Parser(
        prog="%scriptgen stats",
        add_help=False,
        description="The usage report and the last batches.",
    )
    stats.add_argument("--since", default=None, help="1h, 30m, 2d or an ISO date")
    stats.add_argument(
        "--batch", default=None, metavar="ID", help="also this batch's summary and errors"
    )
    sql = parsers["sql"] = _Parser(
        prog="%scriptgen sql", add_help=False, description="A read-only SELECT on the call log."
    )
    sql.add_argument("query", nargs=argparse.REMAINDER)
    models = parsers["models"] = _Parser(
        prog="%scriptgen models",
        add_help=False,
        description="The model catalogue, the limits remembered for this endpoint and key, and "
        "what each model has used now.",
    )
    _tier_argument(models)
    limits = parsers["limits"] = _Parser(
        prog="%scriptgen limits",
        add_help=False,
        description="The limits learned and remembered for this endpoint and key (a later batch "
        "starts from them); --forget MODEL or --forget-all forgets them first.",
    )
    forget = limits.add_mutually_exclusive_group()
    forget.add_argument("--forget", metavar="MODEL", help="forget this model's limits")
    forget.add_argument("--forget-all", action="store_true", help="forget every model's limits")
    limits.add_argument("--all", action="store_true", help="every endpoint and key, not this one")
    chart = parsers["chart"] = _Parser(
        prog="%scriptgen chart", add_help=False, description="A chart from the call log."
    )
    chart.add_argument("kind", choices=("throughput", "latency", "cost", "errors"))
    scope = chart.add_mutually_exclusive_group()
    scope.add_argument("--batch", default=None, help="a batch id (default: the latest)")
    scope.add_argument(
        "--all", action="store_true", help="every batch in the log (latency, cost, errors)"
    )
    retry = parsers["retry"] = _Parser(
        prog="%scriptgen retry",
        add_help=False,
        description="Re-run the failed and not-run requests of a batch that a new attempt can "
        "fix: with the same settings (rate limits, server errors, timeouts, invalid JSON, not "
        "run, ...) or with the settings given here changed for them (truncated: a higher "
        "--max-tokens; too large or a model gone: --model); it says what it left out.",
    )
    retry.add_argument("--failed", action="store_true", help="the failures (the default)")
    retry.add_argument(
        "--all", action="store_true", help="every failure, even those the same answer awaits"
    )
    retry.add_argument("--batch", default=None, help="a batch id (default: the latest)")
    retry.add_argument("-o", "--output", metavar="VAR")
    _settings_arguments(retry, retry=True)
    project = parsers["project"] = _Parser(
        prog="%scriptgen project",
        add_help=False,
        description="A project's chapters: current script version, versions, last failure.",
    )
    project.add_argument("project_id", help="the id create_project returned")
    emulator = parsers["emulator"] = _Parser(
        prog="%scriptgen emulator", add_help=False, description="The local Gemini emulator."
    )
    emulator.add_argument("action", choices=("start", "stop", "status"))
    emulator.add_argument("--config", metavar="FILE", help="TOML/JSON emulator config")
    emulator.add_argument("--minute-s", type=float, default=None)
    emulator.add_argument("--day-s", type=float, default=None)
    emulator.add_argument("--latency-scale", type=float, default=None)
    jobs = parsers["jobs"] = _Parser(
        prog="%scriptgen jobs",
        add_help=False,
        description="Batch API jobs: list them, resume (collect) a batch's results, cancel it.",
    )
    jobs.add_argument("action", nargs="?", choices=commands.JOB_ACTIONS, default="list")
    jobs.add_argument("batch", nargs="?", default=None, help="a batch id or job name")
    jobs.add_argument("-o", "--output", metavar="VAR")
    for parser in parsers.values():
        parser.add_argument("--db", default=None, metavar="PATH", help="the call log file")
    return parsers


def _tier_argument(parser: _Parser) -> None:
    parser.add_argument(
        "--tier",
        default=None,
        metavar="|".join(commands.TIERS),
        help="the catalogue's limits for this tier (default: $SCRIPTGEN_TIER, else free)",
    )


BATCH = _batch_parser()
LINES = _line_parsers()


def _help() -> str:
    parts = [BATCH.format_help(), *(p.format_help() for p in LINES.values())]
    return "\n".join(parts)


@magics_class
class ScriptgenMagics(Magics):
    default_models = Unicode(
        os.environ.get("SCRIPTGEN_MODELS", ""),
        config=True,
        help="Default ladder for %%scriptgen batch (comma-separated); env SCRIPTGEN_MODELS.",
    ).tag(config=True)
    default_db = Unicode(
        "", config=True, help="Call log file (default: SCRIPTGEN_DB or ./scriptgen.duckdb)."
    ).tag(config=True)
    default_concurrency = Unicode(
        "auto", config=True, help="Default --concurrency: auto, seed or a number."
    ).tag(config=True)
    default_timeout_s = Float(60.0, config=True, help="Per-request timeout in seconds.").tag(
        config=True
    )
    default_log_wait_s = Float(
        LOG_WAIT_S,
        config=True,
        help="Seconds a batch waits for its call log while another process holds the file, "
        "before it starts and at its end (log_wait_s).",
    ).tag(config=True)

    @no_var_expand  # the line as typed: IPython's $name / {expr} would rewrite a query's text
    @line_cell_magic
    def scriptgen(self, line: str, cell: str | None = None) -> Any:
        with _usage_errors():
            return self._dispatch(line, cell)

    def _dispatch(self, line: str, cell: str | None) -> Any:
        command, rest = _command_of(line)
        if not command:
            raise UsageError(f"Say what to do: batch (cell), or {', '.join(LINES)}.\n{_help()}")
        if cell is not None:
            if command != "batch":
                raise UsageError(f"%%scriptgen runs 'batch' only, not {command!r}.")
            args = BATCH.parse_args(_option_words(rest))
            if args.awaited:
                raise UsageError("--await needs the input transformer: run %load_ext scriptgen_nb.")
            return self.run_batch(args, cell)
        if command == "batch":
            raise UsageError("batch is a cell magic: start the cell with %%scriptgen batch.")
        handler: Callable[[argparse.Namespace], Any] | None = getattr(self, f"_{command}", None)
        if command not in LINES or handler is None:
            raise UsageError(f"Unknown command {command!r}; use one of: batch, {', '.join(LINES)}.")
        if command == "sql":
            return handler(_sql_arguments(rest))
        return handler(LINES[command].parse_args(_option_words(rest)))

    # --- batches -------------------------------------------------------------------------

    def prepare_batch(
        self, args: argparse.Namespace, cell: str
    ) -> tuple[list[Any], dict[str, Any]]:
        """The requests and batch options a `%%scriptgen batch` cell stands for."""
        self._check_settings(args)
        if args.over:
            table = self._variable(args.over, "--over")
            prompts: list[Any] = cells.templated_prompts(cell, table, args.over)
        else:
            prompts = cells.literal_prompts(cell)
            if args.vars:
                prompts = cells.fill_names(prompts, self._user_variables())
        schema = self._schema(args.schema) if args.schema else None
        requests = commands.batch_requests(prompts, args, schema)
        if not args.dry_run:  # a dry run writes no log: any path will do
            commands.check_log(self._db(args.db), self.default_log_wait_s)
        options = self._batch_options(
            args, models=args.model or self.default_models, cache=args.cache
        )
        return requests, options

    def _check_settings(self, args: argparse.Namespace) -> None:
        """Refuse a bad settings flag (and --concurrency) in one line naming it."""
        commands.check_tier(args.tier)
        args.concurrency = commands.parse_concurrency(args.concurrency or self.default_concurrency)
        check_flags(args)

    def _batch_options(self, args: argparse.Namespace, **given: Any) -> dict[str, Any]:
        """The batch options of the settings flags (`given`: models, cache and the rest a
        command decides), on the session's endpoint (saying once when it is the emulator)."""
        endpoint = SESSION.use()
        options = commands.batch_options(
            concurrency=args.concurrency,
            budget_usd=given.pop("budget_usd", args.budget),
            db=self._db(args.db),
            timeout_s=self.default_timeout_s if args.timeout is None else args.timeout,
            max_attempts=given.pop("max_attempts", args.max_attempts),
            log_wait_s=self.default_log_wait_s,
            quota=args.quota,
            mode=args.mode,
            deadline=args.deadline,
            **given,
            **endpoint,
        )
        options = commands.with_tier(options, args.tier)
        commands.check_max_tokens(args.max_output_tokens, options)
        return options

    def run_batch(self, args: argparse.Namespace, cell: str) -> pd.DataFrame | None:
        requests, options = self.prepare_batch(args, cell)
        if args.dry_run:
            return self._dry_run(requests, options)
        if options.get("mode", "live") != "live":
            return self._deliver(self._run_planned(requests, options), args.output)
        try:
            results = batch_generate(requests, progress="auto", **options)
            _say_how_to_retry(results, requests)
        except BatchInterrupted as stopped:
            results = ResultList(stopped.results)
            if isinstance(stopped, CallLogFailed) and stopped.unlogged:
                print(
                    f"{_one_line(stopped.reason)}: {len(results.succeeded)} of {len(results)} "
                    f"finished; {len(stopped.unlogged)} answer(s) are only in this cell's "
                    "results, not in the call log: keep them (re-running the cell would send "
                    "them again)."
                )
            else:
                print(
                    f"Interrupted: {len(results.succeeded)} of {len(results)} finished; "
                    "the rest are marked not_run (re-run the cell to resume)."
                )
        return self._deliver(results, args.output)

    def _run_planned(self, requests: Sequence[Any], options: dict[str, Any]) -> ResultList:
        """`--mode batch_api|auto`: the plan, then live calls (with the panel) or the Batch
        API, said as the terminal says it: the batch id and that it waits, the jobs' states
        as they move, the summary; an interrupt is one line naming the resume to run."""
        planned = planned_batch(requests, progress="auto", **options)
        show_plan(planned.plan, "auto")
        words = magic_words(local=_on_session_emulator(options))
        submitted: list[str] = []

        def on_submitted(handle: Any) -> None:
            submitted.append(handle.batch_id)
            for line in words.submitted(handle.batch_id, len(handle.jobs), handle.waiting):
                print(line)
            handle.on_wait = commands.WaitLine(print, time.monotonic)

        started = time.monotonic()
        try:
            results = planned.run(on_submitted)
        except KeyboardInterrupt:  # before the jobs existed
            print(
                "Interrupted while submitting to the Batch API; `%scriptgen jobs` lists what "
                "was recorded."
            )
            return ResultList([])
        except BatchInterrupted as stopped:
            results = ResultList(stopped.results)
            if not submitted or type(stopped) is not BatchInterrupted:
                print(_one_line(stopped.reason))  # the wait gave up, or the call log failed
            else:
                not_run = sum(
                    1 for r in results if r.error is not None and r.error.kind == "not_run"
                )
                print(words.stopped(submitted[0], "Interrupted", not_run))
            return results
        if submitted:
            print(words.summary(submitted[0], results, time.monotonic() - started))
        _say_how_to_retry(results, requests)
        return results

    async def run_batch_awaited(self, line: str, cell: str) -> pd.DataFrame | None:
        """`--await`: the same batch on the kernel's loop, where Cancel acts mid-run."""
        with _usage_errors():
            args = BATCH.parse_args(_option_words(line)[1:])
            requests, options = self.prepare_batch(args, cell)
            if args.dry_run:
                return self._dry_run(requests, options)
            token = CancelToken()
            try:
                results = await abatch_generate(requests, progress="auto", cancel=token, **options)
                _say_how_to_retry(results, requests)
            except BatchInterrupted as stopped:
                results = ResultList(stopped.results)
            return self._deliver(results, args.output)

    def _dry_run(self, requests: Sequence[Any], options: dict[str, Any]) -> Any:
        """The estimate of live calls, or with --mode batch_api|auto the plan (each option's
        cost and time, and the choice) alone; nothing is sent, no call log is created."""
        if options.get("mode", "live") != "live":
            return planned_batch(requests, create_log=False, **options).plan
        estimate = commands.estimate_requests(requests, options)
        print(estimate)
        return commands.estimate_frame(estimate)

    def _deliver(self, results: ResultList, output: str | None) -> pd.DataFrame | None:
        frame = results.to_dataframe()
        if output:
            self._namespace()[output] = frame
            return None
        return frame

    # --- line commands -------------------------------------------------------------------

    def _stats(self, args: argparse.Namespace) -> StatsReport:
        """The usage report and the last batches (their lasting figures), and with --batch that
        batch's summary and errors, as one titled result that displays nothing until the
        notebook shows it."""
        since = _since(args.since)
        log = self._reader(args.db, "stats")
        batch = commands.known_batch(log.db, args.batch, LISTER) if args.batch else None
        return StatsReport(
            log=str(log.db.path),
            since="all time" if since is None else f"since {since:%Y-%m-%d %H:%M:%S %Z}",
            usage=log.usage_report(since=since),
            batches=log.batches(limit=5)[BATCH_COLUMNS],
            batch_id=batch,
            summary=None if batch is None else log.batch_summary(batch),
            errors=None if batch is None else log.errors(batch),
        )

    def _sql(self, args: argparse.Namespace) -> pd.DataFrame:
        if not args.query:
            raise UsageError("%scriptgen sql needs a query: %scriptgen sql SELECT ...")
        return self._reader(args.db, "sql").sql(args.query)

    def _models(self, args: argparse.Namespace) -> pd.DataFrame:
        """The catalogue in use, with the limits remembered for this endpoint and key and what
        each model has used in its windows there."""
        endpoint = _session_endpoint()
        catalogue = commands.with_tier(endpoint, args.tier).get("catalogue")
        path = self._db(args.db)
        log = self._reader(path, "models").db if Path(path).exists() else None  # none yet: fine
        return commands.models_frame(log, catalogue, endpoint)

    def _limits(self, args: argparse.Namespace) -> pd.DataFrame:
        """Say whose limits these are (forgetting first, when asked) and return them."""
        identity = commands.quota_identity(_session_endpoint(), every=args.all)
        forgets = args.forget is not None or args.forget_all
        log = self._log(args.db) if forgets else self._reader(args.db, "limits")
        said, frame = commands.limits_action(
            log.db, identity, forget=args.forget, forget_all=args.forget_all
        )
        print(said)
        return frame

    def _chart(self, args: argparse.Namespace) -> Any:
        """A chart of one batch (the latest, or --batch ID), or with --all of the whole log."""
        from .charts import chart

        if args.all and args.kind == "throughput":
            raise UsageError(
                "%scriptgen chart throughput --all: throughput shows one batch over time; "
                "leave out --all for the latest batch, or pass --batch ID."
            )
        log = self._reader(args.db, "chart")
        return chart(args.kind, log, None if args.all else self._chart_batch(log, args.batch))

    @staticmethod
    def _chart_batch(log: CallStore, batch: str | None) -> str | None:
        """The batch a chart shows: `--batch ID`, else the latest (None: the log has none, and
        the chart says there is no data yet)."""
        if batch is not None:
            return commands.known_batch(log.db, batch, LISTER)
        newest = log.batches(limit=1)
        return None if newest.empty else str(newest["batch_id"].iloc[0])

    def _retry(self, args: argparse.Namespace) -> pd.DataFrame | None:
        """Re-run what a new attempt can fix of a batch's failures (all with --all), with the
        settings given changed; say what was left out."""
        self._check_settings(args)
        log = self._log(args.db)
        if args.batch:
            batch_id = commands.known_batch(log.db, args.batch, LISTER)
        else:
            batch_id = commands.latest_batch(log, "run %%scriptgen batch first")
        settings = request_settings(args)
        if args.schema:
            settings["schema"] = self._schema(args.schema)
        changes = commands.RetryChanges(settings, args.model or None)
        given = {"budget_usd": args.budget, "max_attempts": args.max_attempts}
        plan = commands.retry_plan(log, batch_id, changes, everything=args.all, given=given)
        nothing = plan.nothing()
        if nothing is not None:
            print(f"%scriptgen retry: {nothing}")
            return None
        if plan.note():
            print(
                f"%scriptgen retry: {len(plan.requests)} request(s) of batch {batch_id}; "
                f"{plan.note()}"
            )
        if plan.carried_note():
            print(f"%scriptgen retry: {plan.carried_note()}")
        options = self._batch_options(args, **plan.options(self.default_models))
        try:
            results = batch_generate(plan.requests, progress="auto", **options)
            _say_how_to_retry(results, plan.requests)
        except BatchInterrupted as stopped:  # the kernel's stop button: keep what finished
            results = ResultList(stopped.results)
            print(
                f"Interrupted: {len(results.succeeded)} of {len(results)} finished; the rest "
                "are marked not_run (`%scriptgen retry` runs them)."
            )
        return self._deliver(results, args.output)

    def _project(self, args: argparse.Namespace) -> pd.DataFrame:
        """Print a one-line summary and return the chapters' status."""
        status = project_status(args.project_id, db=self._db(args.db))
        scripted = int(status["version"].notna().sum())
        failing = int(status["last_failure"].notna().sum())
        print(
            f"Project {args.project_id}: {len(status)} chapters, {scripted} with a script, "
            f"{failing} whose last script request failed."
        )
        return status

    def _jobs(self, args: argparse.Namespace) -> Any:
        """Batch API jobs: the list, or a batch's results collected (resume), or cancelled."""
        try:
            commands.job_target(args.action, args.batch)
        except ConfigurationError as exc:
            raise UsageError(f"%scriptgen {exc}") from None
        session = _session_endpoint()
        done = commands.jobs_action(
            args.action,
            args.batch,
            db=self._db(args.db),
            api_key=session.get("api_key"),
            on_wait=commands.WaitLine(print, time.monotonic),
            batch_api=session.get("batch_api"),
        )
        return self._deliver(done, args.output) if isinstance(done, ResultList) else done

    def _emulator(self, args: argparse.Namespace) -> str:
        if args.action == "stop":
            return "stopped" if SESSION.stop() else "no local emulator was running"
        if args.action == "start":
            changes = {
                k: v
                for k, v in (
                    ("minute_s", args.minute_s),
                    ("day_s", args.day_s),
                    ("latency_scale", args.latency_scale),
                )
                if v is not None
            }
            try:  # the emulator's own ConfigError: it shares no code with the library
                config = EmulatorConfig.from_file(args.config) if args.config else None
                if changes:
                    config = replace(config or auto_config(), **changes)
            except EmulatorConfigError as exc:
                raise UsageError(f"%scriptgen emulator start: {exc}") from None
            SESSION.start(config, chosen=True)
        return SESSION.status()

    # --- helpers -------------------------------------------------------------------------

    def _db(self, path: str | None) -> str:
        return path or self.default_db or default_db_path()

    def _log(self, path: str | None) -> CallStore:
        """The call log opened to write it (retry, forgetting limits), waiting for a held file
        as a batch does (`default_log_wait_s`)."""
        return CallStore(
            self._db(path), log_wait_s=self.default_log_wait_s, named_by=commands.DB_OPTION
        )

    def _reader(self, path: str | None, command: str) -> CallStore:
        """The call log opened to read it, as the CLI's reading commands do: read-only, so a
        log on a read-only place is read and none is ever migrated or created."""
        db = self._db(path)
        if not Path(db).exists():
            raise UsageError(
                f"%scriptgen {command}: no call log at {db} yet; run a batch first or pass --db."
            )
        return CallStore(db, read_only=True, named_by=commands.DB_OPTION)

    def _namespace(self) -> dict[str, Any]:
        if self.shell is None:
            raise UsageError("The scriptgen magics need a running IPython shell.")
        namespace: dict[str, Any] = self.shell.user_ns
        return namespace

    def _variable(self, name: str, option: str) -> Any:
        ns = self._namespace()
        if name not in ns:
            newest_first = list(reversed(self._user_variables()))
            likely = difflib.get_close_matches(name, newest_first, n=3)
            yours = some_names(newest_first, likely) or "none yet"
            raise UsageError(
                f"{option} {name}: no variable of that name in the notebook (yours: {yours})."
            )
        return ns[name]

    def _user_variables(self) -> dict[str, Any]:
        """The user's variables, without IPython's own (In, Out, _10, exit, ...)."""
        hidden = self.shell.user_ns_hidden if self.shell is not None else {}
        return cells.user_variables(self._namespace(), hidden)

    def _schema(self, name: str) -> Any:
        """`--schema NAME`: the variable, when it holds a Pydantic model class or a JSON Schema
        dict."""
        schema = self._variable(name, "--schema")
        if not isinstance(schema, type | Mapping | BaseModel):
            raise UsageError(
                f"--schema {name}: the variable holds {type(schema).__name__} {schema!r:.40}, "
                "not a Pydantic model class or a JSON Schema dict; name one of those."
            )
        try:
            json_schema_of(schema)
        except ConfigurationError as exc:
            raise UsageError(f"--schema {name}: {_one_line(str(exc))}") from None
        return schema


ScriptgenMagics.scriptgen.__doc__ = (
    "Run Gemini batches from cells and read the call log.\n\n" + _help()
)


@contextmanager
def _usage_errors() -> Iterator[None]:
    """A magic's `ConfigurationError` (a bad option value, a name nobody knows, a refused
    query) as IPython's `UsageError`: one line, shown without a traceback into the library, and
    an unknown model said with the magic that lists the models, a missing key with where the
    batch was to go."""
    try:
        yield
    except UnknownModelError as exc:
        raise UsageError(commands.unknown_model(exc, "`%scriptgen models`")) from None
    except MissingApiKeyError as exc:
        start = "run `%scriptgen emulator start` for a local emulator"
        local = f"unset {ENV_BASE_URL} (the magics then start one), or {start}"
        local = local if exc.base_url is not None else start
        raise UsageError(commands.missing_key(exc, local)) from None
    except ConfigurationError as exc:
        raise UsageError(_one_line(str(exc))) from None


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _since(text: str | None) -> datetime | None:
    """`stats --since`: a duration ago or an ISO date/time, or the accepted forms named."""
    if text is None:
        return None
    try:
        return parse_time(text)
    except ConfigurationError:
        raise UsageError(
            f"%scriptgen stats --since {text!r}: give a duration ago (90s, 30m, 1h, 2d, 1w) or "
            "an ISO date/time (2026-03-02, 2026-03-02T10:00+01:00)."
        ) from None


def _say_how_to_retry(results: ResultList, requests: Sequence[GenerationRequest]) -> None:
    """After a batch with failures: the `%scriptgen retry` that will help (more tokens for a
    truncated answer; what a new attempt cannot fix, named)."""
    hint = commands.retry_hint(results, "%scriptgen retry", requests)
    if hint is not None:
        print(f"{len(results.failed)} of {len(results)} did not succeed; {hint}.")


def _option_words(text: str) -> list[str]:
    """A magic line's options split like a shell line; a `#` comment at its end is dropped, so
    `%scriptgen retry  # the failures` reads as it would in Python (a quoted `#` is kept)."""
    return shlex.split(text, comments=True)


def _command_of(line: str) -> tuple[str, str]:
    """A magic line's command word and the rest of the line, as typed."""
    words = line.split(maxsplit=1)
    if not words:
        return "", ""
    return words[0], words[1] if len(words) > 1 else ""


# `%scriptgen sql`'s own option, before the query: `--db PATH` or `--db=PATH`, PATH maybe quoted.
_SQL_OPTION = re.compile(r"""\s*--db(?:=|\s+)(?:"[^"]*"|'[^']*'|\S+)""")


def _sql_arguments(rest: str) -> argparse.Namespace:
    """`%scriptgen sql [--db PATH] QUERY`: the options, and the query exactly as typed.

    Only the options are split like a shell line: splitting the query would strip its quotes,
    so `error_kind = 'timeout'` would name a column, and a literal equal to a column's name
    would silently compare two columns.
    """
    options: list[str] = []
    while match := _SQL_OPTION.match(rest):
        options.extend(shlex.split(match.group()))
        rest = rest[match.end() :]
    args = LINES["sql"].parse_args(options)
    args.query = rest.strip()
    return args


def magic_words(*, local: bool = False) -> commands.BatchApiWords:
    """What the magics say of a Batch API batch (`local`: its jobs run on this kernel's
    emulator, and end with the kernel)."""
    return commands.BatchApiWords(
        "%scriptgen", "%scriptgen retry --batch {batch}", "this kernel", local=local
    )


def _on_session_emulator(options: Mapping[str, Any]) -> bool:
    url = options.get("base_url")
    return url is not None and url == _session_endpoint().get("base_url")


def _session_endpoint() -> dict[str, Any]:
    """The endpoint options of the session's emulator when one runs and batches use it, else
    none (Google, or GOOGLE_GEMINI_BASE_URL); starts nothing."""
    return SESSION.current()


def await_transformer(lines: list[str]) -> list[str]:
    """Rewrite a `%%scriptgen batch --await` cell into an `await` on the kernel's loop."""
    if not lines or not lines[0].startswith(CELL_MAGIC):
        return lines
    line = lines[0][len(CELL_MAGIC) :].strip()
    if "--await" not in _option_words(line):
        return lines
    body = "".join(lines[1:])
    call = (
        "await get_ipython().find_cell_magic('scriptgen').__self__"
        f".run_batch_awaited({line!r}, {body!r})\n"
    )
    return [call]
