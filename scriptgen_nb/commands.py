"""What the two command surfaces share: `%%scriptgen` (jupyter/magic.py) and `scriptgen` (cli/).

Owns the meaning of their common options (`--concurrency auto|seed|N`, `--cache`, the models
ladder, budget, call log, timeout) as batch options, the dry run's estimate, the catalogue
table (`%scriptgen models` / `scriptgen models`), the plan for re-running a logged batch's
failures (`%scriptgen retry --failed` / `scriptgen retry --failed`) and the Batch API jobs'
list / resume / cancel (`%scriptgen jobs` / `scriptgen jobs`). Errors are
`ConfigurationError`s naming the option; each surface turns them into its own kind of usage
error. Imports no IPython, no argparse and no duckdb.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .engine.backend import GOOGLE_ENDPOINT
from .engine.errors import ConfigurationError
from .engine.models import ModelCatalogue, ModelSpec, default_catalogue
from .engine.pricing import catalogue_day
from .engine.values import GenerationRequest, ModelHistory
from .estimate import Estimate, estimate_batch
from .store.session import CACHE_MODES
from .wiring import BatchOptions

if TYPE_CHECKING:
    import pandas as pd

    from .results import ResultList
    from .store import CallStore, Database

CONCURRENCY_CHOICES = "a number (a cap on requests in flight), auto (pace by the limits) or seed"
JOB_ACTIONS = ("list", "resume", "cancel")
__all__ = [
    "CACHE_MODES",
    "JOB_ACTIONS",
    "RetryPlan",
    "batch_options",
    "batch_requests",
    "estimate_frame",
    "estimate_requests",
    "job_target",
    "jobs_action",
    "latest_batch",
    "models_frame",
    "parse_concurrency",
    "retry_plan",
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


def batch_requests(prompts: Any, flags: Any, schema: Any = None) -> list[GenerationRequest]:
    """The requests for `prompts` with the request flags both surfaces share (`--operation`,
    `--project`, `--temperature`, `--system`, `--max-tokens`, `--thinking-level`; `flags` is
    their parsed namespace) and a schema each surface finds its own way."""
    from .api import create_batch_requests  # only now: it loads google-genai

    made = create_batch_requests(
        prompts,
        operation=flags.operation,
        project_id=flags.project,
        temperature=flags.temperature,
        system=flags.system,
        schema=schema,
        max_output_tokens=flags.max_output_tokens,
        thinking_level=flags.thinking_level,
    )
    return list(made)


def estimate_requests(requests: Sequence[GenerationRequest], options: dict[str, Any]) -> Estimate:
    """A dry run: tokens, cost and the limit-bound time on the options' ladder; nothing sent
    (the endpoint's model list may be read, so that any name it lists is accepted)."""
    where = ("models", "catalogue", "base_url", "api_key", "api_version")
    ladder = BatchOptions(**{k: options[k] for k in where if k in options}).ladder()
    return estimate_batch(requests, ladder)


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


def models_frame(
    db: Database | None,
    catalogue: ModelCatalogue | None = None,
    endpoint: str | None = None,
) -> pd.DataFrame:
    """The catalogue with limits, today's prices (None: unknown) and shutdown dates, and what
    each model used in its windows at `endpoint` (Google by default) according to the call log
    `db` (none: nothing used)."""
    import pandas as pd

    from .store.session import quota_history

    specs: list[ModelSpec] = list(catalogue or default_catalogue())
    used = quota_history(db, specs, endpoint or GOOGLE_ENDPOINT) if db is not None else {}
    today = catalogue_day()
    rows = []
    for spec in specs:
        history = used.get(spec.name, ModelHistory())
        price = spec.price_on(today)
        rows.append(
            {
                "model": spec.name,
                "priority": spec.priority,
                "rpm": spec.rpm,
                "tpm": spec.tpm,
                "rpd": spec.rpd,
                "input_usd_per_1m": price.input_usd_per_1m,
                "cached_input_usd_per_1m": price.cached_input_usd_per_1m,
                "output_usd_per_1m": price.output_usd_per_1m,
                "shutdown": spec.shutdown,
                "status": spec.status,
                "sent_this_minute": sum(1 for ago, _ in history.sent if ago < spec.minute_s),
                "sent_today": len(history.sent),
                "exhausted_for_s": history.exhausted_for_s,
            }
        )
    return pd.DataFrame(rows)


def latest_batch(log: CallStore, hint: str) -> str:
    """The id of the log's newest batch; `hint` says how to make one when there is none."""
    batches = log.batches(limit=1)
    if batches.empty:
        raise ConfigurationError(f"The call log {log.db.path} has no batch yet: {hint}.")
    return str(batches["batch_id"].iloc[0])


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """What re-running a batch's failures sends: its failed and not-run requests, rebuilt from
    the log, on the batch's own ladder, asking the service again (`cache="refresh"`)."""

    batch_id: str
    requests: list[GenerationRequest]
    models: str | None

    def options(self, default_models: str | None = None) -> dict[str, Any]:
        return {"models": self.models or default_models or None, "cache": "refresh"}


def retry_plan(log: CallStore, batch_id: str) -> RetryPlan:
    summary = log.batch_summary(batch_id)  # refuses an unknown batch, naming it
    ladder = summary["ladder"].iloc[0]
    ladder = ladder.replace(" ", "") if isinstance(ladder, str) else ""
    return RetryPlan(batch_id, log.failed_requests(batch_id), ladder or None)


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
    on_progress: Callable[[int, int | None], None] | None = None,
) -> pd.DataFrame | ResultList | str:
    """`jobs list` (the jobs, newest first), `jobs resume BATCH` (its results, collected and
    ingested once) or `jobs cancel BATCH` (a sentence naming the jobs cancelled)."""
    from .api import cancel_batch_job, list_batch_jobs, resume_batch_job

    target = job_target(action, batch)
    if action == "list":
        frame: pd.DataFrame = list_batch_jobs(db)
        return frame
    if action == "cancel":
        names = cancel_batch_job(target, db=db, api_key=api_key)
        return f"cancelled {len(names)} job(s): {', '.join(names) or 'none was running'}"
    return resume_batch_job(target, db=db, api_key=api_key, on_progress=on_progress)
