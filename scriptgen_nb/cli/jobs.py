"""`scriptgen jobs [list | resume BATCH | cancel BATCH]`: the call log's Gemini Batch API jobs.

`list` prints them (newest first, with their state as last seen); `resume` waits for a batch's
jobs and ingests their answers once (what `%scriptgen jobs resume` and `resume_batch_job` do),
then delivers the results as `scriptgen run` does (`--out`, the summary line, exit statuses);
`cancel` cancels them at the service. The actions are `commands.jobs_action`, shared with the
magic. None of them creates a call log that is not there. The library is imported when the
command runs, so `--help` stays quick.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .log import DB_HELP, table
from .options import output_arguments
from .run import say_progress
from .signals import TerminationSignals

HELP = "list the call log's Gemini Batch API jobs; resume (collect) or cancel a batch's jobs"
EXAMPLES = """\
A batch sent with `scriptgen run --mode batch_api` (or an `auto` run that chose the Batch API)
is in the call log before its jobs are created, so Ctrl-C, a closed terminal or a crash loses
nothing: `resume` finds the jobs again (by their batch id or a job name), waits for them and
ingests their answers exactly once; resuming again reads them from the log. The jobs are sent
to, and resumed at, the endpoint the batch was sent to, with GEMINI_API_KEY (or GOOGLE_API_KEY).

examples:
  scriptgen jobs                                       # every job, newest first
  scriptgen jobs resume 3f2a9c0d1e4b --out results.jsonl
  scriptgen jobs resume batches/abc123 --db calls.duckdb
  scriptgen jobs cancel 3f2a9c0d1e4b                   # then `resume` records what had ended

exit status: 0 done (resume: all succeeded), 1 some failed (0 with --allow-failures) or the
call log cannot be used (damaged, held), 2 usage error, 130 Ctrl-C (the jobs keep running at
the service). `list` only reads the log, so a log on a read-only place can be listed.
"""
JOB_ACTIONS = ("list", "resume", "cancel")  # commands.JOB_ACTIONS, without loading the library
LIST_COLUMNS = [
    "batch_id",
    "chunk",
    "job_name",
    "state",
    "model",
    "input",
    "requests",
    "ingested",
    "turnaround_s",
    "expires_in_h",
    "error",
]


def add_parser(sub: Any) -> None:
    jobs = sub.add_parser(
        "jobs",
        help=HELP,
        description=HELP + ".",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    jobs.add_argument(
        "action",
        nargs="?",
        choices=JOB_ACTIONS,
        default="list",
        metavar="list|resume|cancel",
        help="list the jobs; resume: wait for a batch's jobs and collect its results; cancel "
        "them at the service (default: list)",
    )
    jobs.add_argument(
        "batch",
        nargs="?",
        metavar="BATCH",
        help="with resume or cancel: a batch id (as `scriptgen jobs` lists them), a job name "
        "(batches/...) or a job key",
    )
    jobs.add_argument("--db", metavar="PATH", help=DB_HELP)
    output_arguments(jobs, bar=False)


def jobs(args: argparse.Namespace) -> int:
    from ..store import default_db_path

    path = args.db or default_db_path()
    with TerminationSignals() as stop:  # SIGTERM and SIGHUP stop waiting as Ctrl-C does
        status = _jobs(args, path, stop)
    return stop.exit_status(status)


def _jobs(args: argparse.Namespace, path: str, stop: TerminationSignals) -> int:
    """The action, its output and its exit status (before a signal's)."""
    from ..commands import WaitLine, jobs_action
    from ..engine.errors import (
        BatchInterrupted,
        ConfigurationError,
        MissingApiKeyError,
        ScriptgenError,
    )
    from ..results import ResultList
    from .run import FAILED, INTERRUPTED, OK, USAGE, Outcome, cli_words, deliver

    def fail(message: str, status: int = USAGE) -> int:
        print(f"scriptgen jobs: {message}", file=sys.stderr)
        return status

    try:
        if args.action != "resume" and args.out is not None:
            raise ConfigurationError("--out is for `jobs resume` (its results).")
        if not Path(path).exists():  # opening it would create an empty log
            raise ConfigurationError(f"no call log at {path}; pass --db with the batch's log.")
        waited = None if args.quiet else WaitLine(say_progress, time.monotonic)
        done = jobs_action(args.action, args.batch, db=path, on_wait=waited)
        batch_id = _batch_id(path, args.batch) if isinstance(done, ResultList) else None
    except MissingApiKeyError:
        return fail(
            "no Gemini API key: set GEMINI_API_KEY (or GOOGLE_API_KEY) to reach the service "
            "the batch was sent to."
        )
    except ConfigurationError as exc:
        return fail(" ".join(str(exc).split()))
    except BatchInterrupted as stopped:  # Ctrl-C while waiting: the jobs keep running
        stop.hold()
        outcome = Outcome(ResultList(stopped.results), stopped, args.batch, by_batch_api=True)
        outcome.stopped = stop.stopped()
        return deliver("jobs", args, outcome)
    except KeyboardInterrupt:
        return fail(f"{stop.stopped()}; the jobs keep running at the service.", INTERRUPTED)
    except ScriptgenError as exc:  # the call log cannot be used (damaged, read-only, held)
        return fail(" ".join(str(exc).split()), FAILED)
    if isinstance(done, str):  # cancel
        print(done)
        return OK
    if isinstance(done, ResultList):  # resume
        outcome = Outcome(done, batch_id=batch_id, by_batch_api=True)
        if not args.quiet:
            print(cli_words().summary(batch_id, done, None), file=sys.stderr)
        return deliver("jobs", args, outcome)
    print(table(done[LIST_COLUMNS]))
    return OK


def _batch_id(path: str, batch: str) -> str:
    """The id of the batch a `resume` named by its id, a job name or a job key."""
    from ..batch_api.run import find_batch
    from ..store import open_database

    return find_batch(open_database(path, read_only=True), batch)
