"""`scriptgen run INPUT` and `scriptgen retry [BATCH_ID]`: batches from a terminal.

`run` reads prompts (`inputs.py`), turns the flags (`options.py`, checked in their own words by
`flags.py`) into the same batch options as the `%%scriptgen batch` magic (`commands.py`), shows a
tqdm bar on stderr (`bar.py`) and writes the results (`outputs.py`) or prints a table. `retry`
re-runs what a new attempt can fix of a logged batch's failed and not-run requests, with the
settings given changed (`retries.py`, as `%scriptgen retry`), and says what it left out; a batch
that failed ends with the retry command that will help. Exit status: 0 when every
request succeeded, 1 when any failed (0 with `--allow-failures`) or the call log cannot be
used (damaged, read-only, another version's: nothing sent), 2 for a usage or configuration error
(nothing sent, nothing written), 130 after Ctrl-C, 143 after SIGTERM and 129 after SIGHUP
(`signals.py`: the calls in flight recorded, the results so far written). Errors are one line
on stderr, naming the problem and what to do.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
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
    UnknownModelError,
)
from .log import table
from .signals import TerminationSignals

if TYPE_CHECKING:  # the library is imported when a command runs, so `--help` stays quick
    from ..commands import BatchApiWords
    from ..engine.values import GenerationRequest
    from ..results import ResultList

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
ENV_MODELS = "SCRIPTGEN_MODELS"  # the default ladder, as the magic's default_models reads it


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
        from ..commands import batch_requests  # only now: it loads google-genai

        try:
            made = batch_requests(prompts.items, args, schema)
        except ConfigurationError as exc:
            raise ConfigurationError(prompts.locate(str(exc))) from None
        return Work(made, {"cache": args.cache})

    return _batch("run", args, prepare)


def retry(args: argparse.Namespace) -> int:
    def prepare() -> Work:
        from ..commands import DB_OPTION, RetryChanges, known_batch, latest_batch, retry_plan
        from ..flags import request_settings
        from ..store import CallStore, default_db_path
        from ..store.recorder import LOG_WAIT_S
        from .inputs import load_schema

        path = args.db or default_db_path()
        if not Path(path).exists():  # opening it would create an empty log
            raise ConfigurationError(f"no call log at {path}; pass --db with the batch's log.")
        wait = LOG_WAIT_S if args.log_wait is None else args.log_wait
        log = CallStore(path, log_wait_s=wait, named_by=DB_OPTION)
        if args.batch_id:
            batch_id = known_batch(log.db, args.batch_id, "`scriptgen batches`", option="")
        else:
            batch_id = latest_batch(log, "run `scriptgen run` first")
        settings = request_settings(args)
        if args.schema:
            settings["schema"] = load_schema(args.schema)
        changes = RetryChanges(settings, args.models)
        given = {"budget_usd": args.budget, "max_attempts": args.max_attempts}
        plan = retry_plan(log, batch_id, changes, everything=args.all, given=given)
        for note in (plan.note(), plan.carried_note()):
            if note is not None and plan.requests and not args.quiet:
                print(f"scriptgen retry: {note}", file=sys.stderr)
        return Work(plan.requests, plan.options(), plan.nothing())

    return _batch("retry", args, prepare)


def _batch(command: str, args: argparse.Namespace, prepare: Callable[[], Work]) -> int:
    """Check everything, run the batch, deliver the results; the exit status."""

    def fail(message: str) -> int:
        print(f"scriptgen {command}: {message}", file=sys.stderr)
        return USAGE

    with ExitStack() as stack:
        stop = stack.enter_context(TerminationSignals())
        try:
            from ..commands import check_tier
            from ..flags import check_flags

            check_tier(args.tier)
            check_flags(args)
            if args.out is not None:
                from .outputs import output_path

                output_path(args.out)
            work = prepare()
            if work.nothing is not None:
                print(f"scriptgen {command}: {work.nothing}", file=sys.stderr)
                return OK
            from ..commands import batch_options, check_max_tokens, with_tier

            given = work.options
            logged_models = given.pop("models", None)  # a retry's: the batch's own ladder
            models = args.models or logged_models or os.environ.get(ENV_MODELS)
            options = batch_options(
                models=models,
                concurrency=args.concurrency,
                db=args.db,
                budget_usd=given.pop("budget_usd", args.budget),
                timeout_s=args.timeout,
                max_attempts=given.pop("max_attempts", args.max_attempts),
                log_wait_s=args.log_wait,
                quota=args.quota,
                mode=args.mode,
                deadline=args.deadline,
                **given,
            )
            dry = getattr(args, "dry_run", False)
            if not dry:  # a dry run writes no log; a batch's is checked before anything starts
                from ..commands import check_log
                from ..store import default_db_path
                from ..store.recorder import LOG_WAIT_S

                wait = LOG_WAIT_S if args.log_wait is None else args.log_wait
                check_log(args.db or default_db_path(), wait)
            if args.emulator:  # a dry run sends nothing: it needs the emulator's windows only
                options.update(_local_emulator(stack, quiet=args.quiet, start=not dry))
            elif not dry:  # a missing key is said before the library creates the call log
                _check_key(options)
            options = with_tier(options, args.tier)
            check_max_tokens(args.max_output_tokens, options)
            if dry:
                print(_dry_run(work.requests, options))
                return OK
            outcome = _generate(work.requests, options, args, stop.hold)
        except MissingApiKeyError as exc:
            from ..commands import missing_key

            return fail(missing_key(exc, "add --emulator to run on a local one"))
        except UnknownModelError as exc:
            from ..commands import unknown_model

            return fail(unknown_model(exc, "`scriptgen models`"))
        except ConfigurationError as exc:
            return fail(_one_line(str(exc)))
        except ScriptgenError as exc:  # the call log cannot be used (a StoreError): none sent
            print(f"scriptgen {command}: {_one_line(str(exc))}", file=sys.stderr)
            return FAILED
        except KeyboardInterrupt:
            print(
                f"scriptgen {command}: {stop.stopped()} before anything was sent.", file=sys.stderr
            )
            return stop.exit_status(INTERRUPTED)
        outcome.stopped = stop.stopped()
        status = deliver(command, args, outcome)
        if stop.received is not None and outcome.interrupted is None:
            print(
                f"scriptgen {command}: {outcome.stopped} once the batch had ended; nothing was "
                "cut short.",
                file=sys.stderr,
            )
        return stop.exit_status(status)


def _check_key(options: dict[str, Any]) -> None:
    """Raise `MissingApiKeyError` (naming the base URL it was for) when there is no key."""
    from ..wiring import BatchOptions

    BatchOptions(api_key=options.get("api_key")).resolved_api_key()


def _local_emulator(stack: ExitStack, *, quiet: bool, start: bool = True) -> dict[str, Any]:
    """Options for a local emulator started for this command (`start=False`: its catalogue and
    Batch API timing only, for a dry run, which starts nothing)."""
    from ..engine.models import default_catalogue
    from ..jupyter.endpoint import LocalEmulator, auto_config, emulator_batch_api

    config = auto_config()
    settings = emulator_batch_api(config)
    if not start:
        catalogue = default_catalogue().with_windows(config.minute_s, config.day_s)
        return {"catalogue": catalogue, "batch_api": settings}
    local = LocalEmulator()
    emulator = local.start(config, chosen=True)
    stack.callback(local.stop)
    endpoint, _ = local.options()
    if not quiet:
        print(
            f"using a local Gemini emulator at {emulator.base_url} (simulated answers; a "
            f"'minute' lasts {emulator.config.minute_s:g}s)",
            file=sys.stderr,
        )
    return endpoint


def _batch_api(options: dict[str, Any]) -> bool:
    """Whether the library plans the batch (the Batch API, or `auto` choosing)."""
    return options.get("mode", "live") != "live"


def _dry_run(requests: Sequence[GenerationRequest], options: dict[str, Any]) -> str:
    """The estimate of live calls, or for --mode batch_api|auto the plan: each option's cost
    and time and the choice. Nothing is sent and no call log is created."""
    if not _batch_api(options):
        from ..commands import estimate_requests

        return str(estimate_requests(requests, options))
    from ..api import planned_batch

    plan = planned_batch(requests, create_log=False, **options).plan
    return f"dry run: {plan}\n(nothing was sent)"


@dataclass
class Outcome:
    """What a batch came to: its results, the interrupt that ended it early (and how it was
    stopped: interrupted, or by a signal), the batch to retry, whether it ran by the Batch API,
    and the requests sent (what a retry hint compares with)."""

    results: ResultList
    interrupted: BatchInterrupted | None = None
    batch_id: str | None = None
    by_batch_api: bool = False
    stopped: str = "interrupted"
    requests: Sequence[GenerationRequest] = ()
    local: bool = False  # its Batch API jobs ran on the command's own emulator


def _generate(
    requests: Sequence[GenerationRequest],
    options: dict[str, Any],
    args: argparse.Namespace,
    hold: Callable[[], None],
) -> Outcome:
    """Run the batch with the bar (or a bare `ProgressState` for the summary line).

    With --mode batch_api|auto the plan (each option's cost and time, and the choice) is shown
    on stderr first; live calls (all, or a split's urgent part) draw the bar as in live mode,
    and a Batch API part ends with its own summary line. `hold` is called as soon as the
    results exist, before anything is printed (a print to a stalled stderr can take long): from
    then on a signal is only remembered, so the results are written whole.
    """
    from ..api import batch_generate, planned_batch
    from ..commands import WaitLine
    from ..progress import ProgressState, format_summary
    from ..results import ResultList

    bar = None
    if not args.quiet and (args.progress or sys.stderr.isatty()):
        from .bar import TqdmProgress

        bar = TqdmProgress(total=len(requests))
    state = bar.state if bar is not None else ProgressState(total=len(requests))
    listener = bar if bar is not None else state
    submitted: list[str] = []
    words = cli_words(local=bool(args.emulator))

    def on_submitted(handle: Any) -> None:
        submitted.append(handle.batch_id)
        if not args.quiet:
            for line in words.submitted(handle.batch_id, len(handle.jobs), handle.waiting):
                print(line, file=sys.stderr)
            handle.on_wait = WaitLine(say_progress, time.monotonic)

    started = time.monotonic()
    try:
        try:
            if _batch_api(options):
                planned = planned_batch(requests, listeners=[listener], **options)
                if not args.quiet:
                    print(planned.plan, file=sys.stderr, flush=True)
                results = planned.run(on_submitted)
            else:
                results = batch_generate(requests, listeners=[listener], **options)
            outcome = Outcome(results, requests=requests)
        except BatchInterrupted as stopped:  # Ctrl-C, or the call log failed mid-batch
            results = ResultList(stopped.results)
            if submitted and args.emulator and type(stopped) is BatchInterrupted:
                results = _end_local_jobs(submitted[0], options)
            outcome = Outcome(results, stopped, requests=requests, local=bool(args.emulator))
        hold()
    finally:
        if bar is not None:
            bar.close()
        elif not args.quiet and state.snapshot().status != "waiting":
            print(format_summary(state.snapshot()), file=sys.stderr)
    outcome.by_batch_api = bool(submitted)
    outcome.batch_id = submitted[0] if submitted else state.snapshot().batch_id
    if submitted and outcome.interrupted is None and not args.quiet:
        took = time.monotonic() - started
        print(words.summary(outcome.batch_id, outcome.results, took), file=sys.stderr)
    return outcome


def cli_words(*, local: bool = False) -> BatchApiWords:
    """What the terminal says of a Batch API batch (`local`: its jobs run on the command's own
    emulator, started by --emulator, and end with it)."""
    from ..commands import BatchApiWords

    return BatchApiWords(
        "scriptgen", "scriptgen retry {batch}", "this command", local=local, interrupt_ends=True
    )


def say_progress(line: str) -> None:
    """A progress line on stderr, under the command's name (stdout keeps the results)."""
    print(f"scriptgen: {line}", file=sys.stderr, flush=True)


def _end_local_jobs(batch_id: str, options: dict[str, Any]) -> ResultList:
    """A wait on this command's own emulator, interrupted: the jobs would end with it unseen
    and the log would call them pending for two days, so they are cancelled and collected
    while it still runs. The log then says what is true: what had finished is collected, the
    rest not run (for `scriptgen retry`)."""
    from ..api import cancel_batch_job, resume_batch_job

    where = {name: options.get(name) for name in ("db", "base_url", "api_key")}
    cancel_batch_job(batch_id, **where)
    return resume_batch_job(batch_id, batch_api=options.get("batch_api"), **where)


def deliver(command: str, args: argparse.Namespace, outcome: Outcome) -> int:
    """Write (or print) the results; say what failed and how to re-run it; the exit status."""
    from .outputs import summary_table, write_results

    results, interrupted, batch_id = outcome.results, outcome.interrupted, outcome.batch_id
    try:
        if args.out is not None:
            write_results(results, args.out)
            if args.out != "-" and not args.quiet:
                print(f"wrote {len(results)} results to {args.out}", file=sys.stderr)
        else:
            print(table(summary_table(results)))
    except BrokenPipeError:
        raise  # the reader stopped early (`| head`): `main` ends the command quietly
    except (OSError, ScriptgenError) as exc:
        print(
            f"scriptgen {command}: cannot write {args.out} ({_one_line(str(exc))}); "
            f"{_kept_in_the_log(command, args, outcome)}",
            file=sys.stderr,
        )
        return FAILED
    if interrupted is not None:
        if outcome.by_batch_api and type(interrupted) is not BatchInterrupted:
            message = _one_line(interrupted.reason)  # gave up waiting, or the log failed
        elif outcome.by_batch_api:
            not_run = sum(1 for r in results if r.error is not None and r.error.kind == "not_run")
            words = cli_words(local=outcome.local)
            message = words.stopped(batch_id or "?", outcome.stopped, not_run)
        else:
            message = _stopped_early(interrupted, outcome, args)
        print(f"scriptgen {command}: {message}", file=sys.stderr)
        return INTERRUPTED if type(interrupted) is BatchInterrupted else FAILED
    failed = results.failed
    if not failed:
        return OK
    from ..commands import retry_hint

    hint = (
        retry_hint(results, retry_command(args, batch_id), outcome.requests) if batch_id else None
    )
    again = f"; {hint}" if hint else ""
    kinds = sorted({r.error.kind for r in failed if r.error is not None})
    print(
        f"scriptgen {command}: {len(failed)} of {len(results)} requests did not succeed "
        f"({', '.join(kinds)}){again}",
        file=sys.stderr,
    )
    return OK if args.allow_failures else FAILED


def _kept_in_the_log(command: str, args: argparse.Namespace, outcome: Outcome) -> str:
    """Where the answers of a batch whose output could not be written are, and how to write
    them again: `run` again with another --out reads them from the log's cache (only when the
    cache is used: `retry` always asks the service), or Python reads them from the log."""
    from ..store import default_db_path

    db = getattr(args, "db", None) or default_db_path()
    batch = outcome.batch_id
    if batch is None:
        return f"the answers are in the call log {db}."
    python = f"`scriptgen_nb.CallStore({db!r}).results({batch!r})` in Python reads them"
    again = (
        "the same command with another --out writes them from there (answered requests are "
        f"not sent again), or {python}"
        if command == "run" and getattr(args, "cache", "use") == "use"
        else python
    )
    return f"the answers are kept in the call log {db} (batch {batch}): {again}."


def _stopped_early(
    interrupted: BatchInterrupted, outcome: Outcome, args: argparse.Namespace
) -> str:
    """What ended a live batch early, how far it got, where its results are, what to run next.

    Said in the terminal's terms: a command to run, not the exception's `.results`.
    """
    results, out = outcome.results, args.out
    not_run = sum(1 for r in results if r.error is not None and r.error.kind == "not_run")
    got = f"after {len(results) - not_run} of {len(results)} requests ({not_run} not run)"
    kept = (
        "the results so far are in the table above"
        if out is None
        else f"the results so far were written to {'stdout' if out == '-' else out}"
    )
    if type(interrupted) is not BatchInterrupted:  # the call log failed: say why
        return f"{_one_line(interrupted.reason)} {got}; {kept}{_only_there(interrupted)}."
    rest = (
        f"`{retry_command(args, outcome.batch_id)}` runs the rest"
        if outcome.batch_id
        else "running the same command again sends only what has no result yet"
    )
    return f"{outcome.stopped} {got}; {kept}; {rest}."


def retry_command(args: argparse.Namespace, batch_id: str) -> str:
    """`scriptgen retry BATCH_ID`, with what it needs to find the batch and send again as the
    batch did: its call log (`--db`) and a local emulator (`--emulator`). Copied as it is, it
    works: the path is quoted for a shell."""
    words = ["scriptgen", "retry", batch_id]
    if getattr(args, "db", None):
        words += ["--db", args.db]
    if getattr(args, "emulator", False):
        words.append("--emulator")
    return shlex.join(words)


def _only_there(failed: BatchInterrupted) -> str:
    """When the call log could not take answers that were paid for: that they are only where
    the results went, and that a retry or a re-run, finding none in the log, would pay again."""
    from ..store.database import CallLogFailed

    unlogged = failed.unlogged if isinstance(failed, CallLogFailed) else ()
    if not unlogged:
        return ""
    return (
        f"; {len(unlogged)} answer(s) are only there: the call log could not take them, so a "
        "retry or a re-run would send them again (and pay again)"
    )


def _one_line(message: str) -> str:
    return " ".join(message.split())
