"""What the two command surfaces share: `%%scriptgen` (jupyter/magic.py) and `scriptgen` (cli/).

Owns the meaning of their common options (`--concurrency auto|seed|N`, `--cache`, `--tier`,
the models ladder, budget, call log, timeout) as batch options, the dry run's estimate, the
catalogue table (`%scriptgen models` / `scriptgen models`), the remembered limits of a quota
identity (`%scriptgen limits` / `scriptgen limits`), the plan for re-running a logged batch's
failures (`%scriptgen retry` / `scriptgen retry`, from `retries.py`), the batch a command names
and the Batch API jobs' list / resume / cancel (`%scriptgen jobs` / `scriptgen jobs`), with
what both say while a batch waits for the Batch API and when that wait is stopped
(`BatchApiWords`, `WaitLine`). Errors are `ConfigurationError`s naming the option; each surface
turns them into its own kind of usage error. Imports no IPython, no argparse and no duckdb.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .engine.errors import ConfigurationError, MissingApiKeyError, UnknownModelError
from .engine.models import ModelCatalogue, ModelSpec, default_catalogue, output_cap_words
from .engine.pricing import catalogue_day
from .engine.values import GenerationRequest, ModelHistory
from .estimate import Estimate, estimate_batch
from .flags import request_settings
from .progress import limit_source
from .retries import RetryChanges, RetryPlan, retry_hint, retry_plan
from .store.limits import REMEMBER_LIMITS_S, forget_limits, remembered_limits
from .store.session import CACHE_MODES
from .wiring import ENV_BASE_URL, BatchOptions

if TYPE_CHECKING:
    import pandas as pd

    from .results import ResultList
    from .store import CallStore, Database

DB_OPTION = "--db"  # how both surfaces name the call log's file, in their messages
CONCURRENCY_CHOICES = "a number (a cap on requests in flight), auto (pace by the limits) or seed"
JOB_ACTIONS = ("list", "resume", "cancel")
TIERS = ("free", "tier1")  # the bundled catalogue's tiers (engine/catalogue.toml)
__all__ = [
    "CACHE_MODES",
    "JOB_ACTIONS",
    "TIERS",
    "BatchApiWords",
    "QuotaIdentity",
    "RetryChanges",
    "RetryPlan",
    "WaitLine",
    "batch_options",
    "batch_requests",
    "check_log",
    "check_max_tokens",
    "check_tier",
    "estimate_frame",
    "estimate_requests",
    "job_target",
    "jobs_action",
    "known_batch",
    "latest_batch",
    "limits_action",
    "missing_key",
    "models_frame",
    "parse_concurrency",
    "quota_identity",
    "retry_hint",
    "retry_plan",
    "unknown_model",
    "with_tier",
]


def parse_concurrency(value: str) -> int | str:
    """`--concurrency`: `auto`, `seed` or a whole number (its range is the library's to check,
    with the library's message: at least 1, and not absurd)."""
    if value in ("auto", "seed"):
        return value
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"--concurrency {value!r}: use {CONCURRENCY_CHOICES}.") from None


def batch_options(
    *,
    models: str | None,
    concurrency: int | str | None,
    cache: str = "use",
    db: str | None = None,
    budget_usd: float | None = None,
    timeout_s: float | None = None,
    max_attempts: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The `batch_generate` keyword options a command's flags stand for.

    Only what was given is passed: None leaves the library's default, and the library's own
    checks (with their messages) judge the rest (`extra`, e.g. `mode=`, `deadline=`).
    """
    given = {
        "models": models or None,
        "max_concurrency": concurrency,
        "cache": cache,
        "db": db,
        "budget_usd": budget_usd,
        "timeout_s": timeout_s,
        "max_attempts": max_attempts,
        **extra,
    }
    return {name: value for name, value in given.items() if value is not None}


def check_log(path: str, log_wait_s: float) -> None:
    """Refuse, writing nothing, a call log a batch could not use (a folder, a read-only place,
    a file that is not a call log this version can write), in one line telling to change
    `--db`: said before an emulator starts or a request is sent. A file another process holds
    is waited for as the batch would (`log_wait_s`)."""
    from .store import Database
    from .store.lock_wait import waiting_up_to

    Database(path, check_only=True, named_by=DB_OPTION, wait=waiting_up_to(log_wait_s))


def check_tier(tier: str | None) -> None:
    """Refuse a `--tier` that is not one of the catalogue's (None: the default), in one line."""
    if tier is not None and tier not in TIERS:
        raise ConfigurationError(f"--tier {tier!r}: use one of {', '.join(TIERS)}.")


def with_tier(options: dict[str, Any], tier: str | None) -> dict[str, Any]:
    """`--tier free|tier1`: the batch options with the default catalogue's limits for `tier`
    (None leaves $SCRIPTGEN_TIER, else the catalogue's default). A catalogue the endpoint gave
    (a local emulator's, with compressed windows) keeps its windows."""
    if tier is None:
        return options
    check_tier(tier)
    catalogue = default_catalogue(tier=tier)
    given: ModelCatalogue | None = options.get("catalogue")
    if given is not None and len(given):
        windows = next(iter(given))
        catalogue = catalogue.with_windows(windows.minute_s, windows.day_s)
    return {**options, "catalogue": catalogue}


def batch_requests(prompts: Any, flags: Any, schema: Any = None) -> list[GenerationRequest]:
    """The requests for `prompts` with the request flags both surfaces share (`--operation`,
    `--project` and those of `flags.REQUEST_SETTINGS`; `flags` is their parsed namespace, which
    the surface checked with `flags.check_flags`) and a schema each surface finds its own way."""
    from .api import create_batch_requests  # only now: it loads google-genai

    made = create_batch_requests(
        prompts,
        operation=flags.operation,
        project_id=flags.project,
        schema=schema,
        **request_settings(flags),
    )
    return list(made)


def _ladder(options: Mapping[str, Any]) -> list[ModelSpec]:
    """The options' ladder (the endpoint's model list may be read, so that any name it lists
    is accepted)."""
    where = ("models", "catalogue", "base_url", "api_key", "api_version")
    return BatchOptions(**{k: options[k] for k in where if k in options}).ladder()


def estimate_requests(requests: Sequence[GenerationRequest], options: dict[str, Any]) -> Estimate:
    """A dry run: tokens, cost and the limit-bound time on the options' ladder; nothing sent."""
    return estimate_batch(requests, _ladder(options))


def check_max_tokens(max_output_tokens: int | None, options: Mapping[str, Any]) -> None:
    """Refuse `--max-tokens` above what a model of the options' ladder can give (its known
    output limit), in the flag's words: the service would refuse every request (400)."""
    if max_output_tokens is None:
        return
    refused = output_cap_words(max_output_tokens, _ladder(options), "--max-tokens")
    if refused is not None:
        raise ConfigurationError(refused)


def estimate_frame(estimate: Estimate) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "requests": estimate.requests,
                "input_tokens": estimate.input_tokens,
                "max_output_tokens": estimate.output_tokens,
                "cost_usd": estimate.cost_usd,
                "min_seconds": estimate.seconds,
                "model": estimate.model,
            }
        ]
    )


@dataclass(frozen=True, slots=True)
class QuotaIdentity:
    """Whose remembered limits a command reads: an endpoint ("google" or a base URL) and an API
    key's fingerprint (engine/identity.py); None stands for every endpoint, or every key."""

    endpoint: str | None
    fingerprint: str | None

    def __str__(self) -> str:
        if self.endpoint is None:
            return "every endpoint and key"
        key = f"key {self.fingerprint}" if self.fingerprint else "every key (no API key set)"
        return f"{self.endpoint}, {key}"


def quota_identity(endpoint: Mapping[str, Any], *, every: bool = False) -> QuotaIdentity:
    """The identity a batch with these endpoint options (`base_url`, `api_key`; none: the
    environment's) would learn limits for; `every` widens it to every endpoint and key."""
    if every:
        return QuotaIdentity(None, None)
    return _identity(_endpoint_options(endpoint))


def _endpoint_options(endpoint: Mapping[str, Any]) -> BatchOptions:
    return BatchOptions(base_url=endpoint.get("base_url"), api_key=endpoint.get("api_key"))


def _identity(options: BatchOptions) -> QuotaIdentity:
    try:
        fingerprint: str | None = options.key_fingerprint()
    except MissingApiKeyError:
        fingerprint = None
    return QuotaIdentity(options.endpoint(), fingerprint)


def limits_action(
    db: Database, identity: QuotaIdentity, *, forget: str | None = None, forget_all: bool = False
) -> tuple[str, pd.DataFrame]:
    """`limits`: a line saying whose limits these are (and, with `forget` a model or
    `forget_all`, how many were forgotten first) and the limits remembered at `identity`."""
    days = f"{REMEMBER_LIMITS_S / 86_400:g} days"
    said = f"limits remembered for {identity} (each for {days} from when it was learned)"
    if forget is not None:
        _check_forgettable(db, identity, forget)
    if forget is not None or forget_all:
        count = forget_limits(
            db, model=forget, endpoint=identity.endpoint, key_fingerprint=identity.fingerprint
        )
        what = f"of {forget} " if forget is not None else ""
        said = f"forgot {count} remembered limit(s) {what}for {identity}; still remembered"
    frame = remembered_limits(db, endpoint=identity.endpoint, key_fingerprint=identity.fingerprint)
    return said, frame


def _check_forgettable(db: Database, identity: QuotaIdentity, model: str) -> None:
    """Refuse `--forget MODEL` when nothing is remembered for it at `identity` (a typo, or
    another endpoint's model), naming what is remembered and the likely meaning."""
    remembered = remembered_limits(
        db, endpoint=identity.endpoint, key_fingerprint=identity.fingerprint
    )
    known = sorted(set(remembered["model"]))
    if model.removeprefix("models/") in known:
        return
    names = [*known, *(spec.name for spec in default_catalogue())]
    close = difflib.get_close_matches(model, list(dict.fromkeys(names)), n=2)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    held = ", ".join(known) if known else "none"
    raise ConfigurationError(
        f"--forget {model}: no limits are remembered for {model} at {identity}, so nothing was "
        f"forgotten.{hint} (Remembered for: {held}.)"
    )


def models_frame(
    db: Database | None,
    catalogue: ModelCatalogue | None = None,
    endpoint: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The catalogue with limits, today's prices (None: unknown) and shutdown dates; beside
    them (`learned`), the limits remembered for the quota identity of the `endpoint` options
    (`base_url`, `api_key`; none: the environment's) and what each model used in its windows
    there, according to the call log `db` (none: nothing used or remembered) and, every
    process together, the shared quota ledger (`quota_*`; None when it is off or empty)."""
    import pandas as pd

    from .quota import quota_usage
    from .store.session import quota_history

    specs: list[ModelSpec] = list(catalogue or default_catalogue())
    options = _endpoint_options(endpoint or {})
    identity = _identity(options)
    used = quota_history(db, specs, options.endpoint()) if db is not None else {}
    learned = _learned_text(db, identity, [s.name for s in specs]) if db is not None else {}
    shared = (
        quota_usage(options.quota, options.quota_endpoint(), identity.fingerprint, specs)
        if identity.fingerprint is not None
        else {}
    )
    today = catalogue_day()
    rows = []
    for spec in specs:
        history = used.get(spec.name, ModelHistory())
        quota = shared.get(spec.name)
        price = spec.price_on(today)
        rows.append(
            {
                "model": spec.name,
                "priority": spec.priority,
                "rpm": spec.rpm,
                "tpm": spec.tpm,
                "rpd": spec.rpd,
                "learned": learned.get(spec.name),
                "input_usd_per_1m": price.input_usd_per_1m,
                "cached_input_usd_per_1m": price.cached_input_usd_per_1m,
                "output_usd_per_1m": price.output_usd_per_1m,
                "shutdown": spec.shutdown,
                "status": spec.status,
                "sent_this_minute": sum(1 for ago, _ in history.sent if ago < spec.minute_s),
                "sent_today": len(history.sent),
                "exhausted_for_s": history.exhausted_for_s,
                "quota_this_minute": None if quota is None else quota.this_minute,
                "quota_today": None if quota is None else quota.today,
                "other_processes": None if quota is None else quota.other_processes,
            }
        )
    return pd.DataFrame(rows)


def _learned_text(db: Database, identity: QuotaIdentity, models: list[str]) -> dict[str, str]:
    """`rpm 150 (stated by the service, learned 2026-12-03); tpm ...` per model: the limits
    remembered for one identity (none without a key: whose would they be?)."""
    if identity.fingerprint is None:
        return {}
    frame = remembered_limits(
        db, endpoint=identity.endpoint, key_fingerprint=identity.fingerprint, models=models
    )
    texts: dict[str, list[str]] = {}
    columns = (frame[c] for c in ("model", "metric", "limit", "source", "learned_at"))
    for model, metric, limit, source, learned_at in zip(*columns, strict=True):
        texts.setdefault(model, []).append(
            f"{metric} {int(limit):,} ({limit_source(source)}, learned {learned_at:%Y-%m-%d})"
        )
    return {model: "; ".join(parts) for model, parts in texts.items()}


def latest_batch(log: CallStore, hint: str) -> str:
    """The id of the log's newest batch; `hint` says how to make one when there is none."""
    batches = log.batches(limit=1)
    if batches.empty:
        raise ConfigurationError(f"The call log {log.db.path} has no batch yet: {hint}.")
    return str(batches["batch_id"].iloc[0])


def known_batch(db: Database, batch_id: str, lister: str, option: str = "--batch") -> str:
    """`batch_id`, when the log holds that batch; else an error naming it as typed (`option`
    and the id; "" for an argument) and saying how to list the batches (`lister`: the
    surface's command for it)."""
    if not db.rows("SELECT 1 FROM batch_log WHERE batch_id = ?", [batch_id]):
        typed = f"{option} {batch_id}: no batch" if option else f"no batch {batch_id!r}"
        raise ConfigurationError(f"{typed} in the call log {db.path}; {lister} lists the batches.")
    return batch_id


def missing_key(error: MissingApiKeyError, local: str) -> str:
    """No API key, in a command's words: where the batch was to go and what to do, `local`
    saying how this surface runs on a local emulator instead. A base URL (GOOGLE_GEMINI_BASE_URL)
    is named: the user chose that endpoint, and telling them to point it at an emulator, or
    that a local one is used, would be wrong."""
    if error.base_url is None:
        return (
            "no Gemini API key: set GEMINI_API_KEY (or GOOGLE_API_KEY), point "
            f"{ENV_BASE_URL} at an emulator (`scriptgen emulator`), or {local}."
        )
    return (
        f"no Gemini API key to send to {error.base_url} ({ENV_BASE_URL}): set GEMINI_API_KEY "
        "(or GOOGLE_API_KEY) to a key it accepts (an emulator from `scriptgen emulator` takes "
        f"any non-empty key unless started with --api-key), or {local}."
    )


def unknown_model(error: UnknownModelError, lister: str) -> str:
    """An unknown model's error in a command's words: the name, a likely meaning, and the
    command that lists the models (`lister`), not the library's `ModelSpec` advice."""
    hint = f" Did you mean {' or '.join(repr(c) for c in error.close)}?" if error.close else ""
    return (
        f"Unknown model {error.name!r}: neither the endpoint nor the catalogue knows it, and "
        f"nothing was sent.{hint} {lister} lists the models."
    )


def job_target(action: str, batch: str | None) -> str:
    """The batch a `jobs resume|cancel` acts on; `jobs list` needs none."""
    if action not in JOB_ACTIONS:
        raise ConfigurationError(f"jobs {action!r}: use one of {', '.join(JOB_ACTIONS)}.")
    if action != "list" and not batch:
        raise ConfigurationError(
            f"jobs {action} needs a batch id or a job name (batches/...), as `jobs` lists them."
        )
    return batch or ""


def jobs_action(
    action: str,
    batch: str | None,
    *,
    db: str,
    api_key: str | None = None,
    on_wait: Callable[[Any], None] | None = None,
    batch_api: Any = None,
) -> pd.DataFrame | ResultList | str:
    """`jobs list` (the jobs, newest first), `jobs resume BATCH` (its results, collected and
    ingested once; `on_wait` hears the jobs' states, `batch_api` how they are watched) or
    `jobs cancel BATCH` (a sentence naming the jobs cancelled)."""
    from .api import cancel_batch_job, list_batch_jobs, resume_batch_job

    target = job_target(action, batch)
    if action == "list":
        frame: pd.DataFrame = list_batch_jobs(db)
        return frame
    if action == "cancel":
        names = cancel_batch_job(target, db=db, api_key=api_key)
        return f"cancelled {len(names)} job(s): {', '.join(names) or 'none was running'}"
    return resume_batch_job(target, db=db, api_key=api_key, on_wait=on_wait, batch_api=batch_api)


@dataclass(frozen=True)
class BatchApiWords:
    """What a command surface says of a batch it handed to the Batch API: submitted and
    waiting, its jobs' progress, stopped, done. One wording for `scriptgen run` / `jobs resume`
    and `%%scriptgen batch` / `%scriptgen jobs`, in each one's commands.

    `command` is the surface's (`scriptgen`, `%scriptgen`), `retry` its retry of a batch (with
    `{batch}`), `waiter` what waits (`this command`, `the kernel`). `local`: the jobs run on an
    emulator that lives in the waiter, so they end with it (a resume elsewhere finds nothing).
    `interrupt_ends`: an interrupt ends the waiter (the terminal's Ctrl-C), not just the wait
    (a kernel's stop button).
    """

    command: str
    retry: str
    waiter: str
    local: bool = False
    interrupt_ends: bool = False

    def _resume(self, batch_id: str) -> str:
        return f"`{self.command} jobs resume {batch_id}`"

    def submitted(self, batch_id: str, jobs: int, waiting: Mapping[str, str]) -> list[str]:
        """The lines said once the jobs exist: the batch id, that it waits, and what then."""
        where = f"the Batch API of {self.waiter}'s emulator" if self.local else "the Batch API"
        jobs_words = f"{jobs} job" if jobs == 1 else f"{jobs} jobs"
        if not self.local:
            then = (
                f"If {self.waiter} stops, the jobs keep running: {self._resume(batch_id)} "
                "collects them."
            )
        elif self.interrupt_ends:
            then = (
                f"Its jobs end with {self.waiter}: if it stops first, their requests stay in the "
                f"call log as not run, for `{self.retry.format(batch=batch_id)}`."
            )
        else:
            then = (
                f"An interrupt stops the wait, not the jobs: {self._resume(batch_id)} collects "
                f"them while {self.waiter} runs (they end with it)."
            )
        lines = [
            f"Submitted batch {batch_id} to {where} ({jobs_words}); waiting for its results. {then}"
        ]
        if waiting:
            why = next(iter(waiting.values()))
            lines.append(
                f"{len(waiting)} job(s) wait to be created: {why}; they are created as the "
                "service lets them, while the others are polled."
            )
        return lines

    def stopped(self, batch_id: str, how: str, not_run: int) -> str:
        """An interrupt (`how`: "interrupted", "stopped by SIGTERM") while waiting: what became
        of the jobs and the command that helps now."""
        if self.local and self.interrupt_ends:
            return (
                f"{how} while waiting; batch {batch_id}'s jobs ran on {self.waiter}'s emulator, "
                f"which stops with it, so they were cancelled: {not_run} request(s) are in the "
                "call log as not run: run the same again, or "
                f"`{self.retry.format(batch=batch_id)}`."
            )
        where = f"on {self.waiter}'s emulator" if self.local else "at the service"
        cancel = f"`{self.command} jobs cancel {batch_id}`"
        return (
            f"{how} while waiting; the Batch API jobs of batch {batch_id} keep running {where}: "
            f"{self._resume(batch_id)} collects them, {cancel} cancels them."
        )

    def summary(self, batch_id: str | None, results: ResultList, seconds: float | None) -> str:
        """The line that ends a wait: the results as the live mode's summary counts them."""
        from .progress import format_duration

        not_run = sum(1 for r in results if r.error is not None and r.error.kind == "not_run")
        took = "" if seconds is None else f" in {format_duration(seconds)}"
        return (
            f"{self.command.lstrip('%')} batch {batch_id} by the Batch API: {results.summary()} "
            f"({not_run} not run){took}"
        )


class WaitLine:
    """Says a Batch API wait's progress (`batch_api.run.WaitStatus`) on `say` whenever it
    changes, with the time waited: one line per change, so a wait of hours stays readable."""

    def __init__(self, say: Callable[[str], None], clock: Callable[[], float]) -> None:
        self._say = say
        self._clock = clock
        self._started = clock()
        self._last: str | None = None

    def __call__(self, status: object) -> None:
        text = str(status)
        if text == self._last:
            return
        self._last = text
        from .progress import format_duration

        self._say(f"{text} (waited {format_duration(self._clock() - self._started)})")
