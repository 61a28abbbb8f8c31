"""Re-running a logged batch's failures: which of them a new attempt can fix, and with what.

`%scriptgen retry` and `scriptgen retry` rebuild a batch's failed and not-run requests from the
call log (store/replay.py) and, by default, send again only those a new attempt can fix:

- with the same settings: rate limits and quotas (`rate_limited`, `quota_exhausted`), server
  errors, timeouts, dropped connections, malformed answers, invalid JSON, an unexpected finish,
  a billing stop (fixed in the account since), a Batch API answer that lost its key
  (`unmatched`) and whatever did not run;
- with a setting changed for them: a `truncated` answer once `--max-tokens` is raised above what
  its request had; a request too large for its models (`too_large`) or whose model is gone
  (`not_found`) once `--model` names other models; a request the service refused as invalid
  (`invalid_request`, a 400) once its settings or models change.

A safety block (`blocked`), a language the model does not answer in (`unsupported_language`) and
a refused permission (`permission_denied`) meet the same answer again: like the kinds above
whose change was not made, they are left out unless `--all` asks, and the plan says which kinds
it left out, how many and what would include them. `retry_hint` turns a finished batch's
failures into the retry command that will help.

The batch's own options carry over unless given again: its attempts per request
(`--max-attempts`) and what is left of its budget (`--budget`: the budget less what the batch
spent, so a batch and its retries together keep to it); `RetryPlan.carried_note` says so. A
batch stopped by its budget has its retry hint name `--budget`. Imports no IPython, no argparse
and no duckdb.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .engine.values import stopped_by_budget
from .store.replay import replayed_requests

if TYPE_CHECKING:
    from .engine.values import GenerationRequest, Result
    from .store import CallStore

# Failures a new attempt with the same settings can fix.
SAME_SETTINGS = frozenset(
    {
        "rate_limited",
        "quota_exhausted",
        "server_error",
        "timeout",
        "connection",
        "malformed_response",
        "invalid_json",
        "unexpected_finish",
        "billing",
        "not_run",
        "unmatched",  # a Batch API answer that lost its key: asked again, it comes back whole
    }
)
# Failures a new attempt fixes only with a setting changed for them: what to change, in flags.
CHANGE_NEEDED = {
    "truncated": "raise --max-tokens",
    "too_large": "name other models with --model",
    "not_found": "name other models with --model",
    "invalid_request": "change the settings it was refused for",
}
ALL_HINT = "--all includes them"


@dataclass(frozen=True, slots=True)
class RetryChanges:
    """What a retry's flags change: request settings (`flags.REQUEST_SETTINGS` names, and
    `schema`) for every request sent again, and the models it is sent on (which also unpins a
    request pinned to one model)."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    models: str | None = None

    def apply(self, request: GenerationRequest) -> GenerationRequest:
        unpinned: dict[str, Any] = {"model": None} if self.models else {}
        return replace(request, **self.settings, **unpinned)

    def fixes(self, kind: str, request: GenerationRequest) -> bool:
        """Whether a new attempt with these changes can end a `kind` failure of `request`."""
        if kind in SAME_SETTINGS:
            return True
        if kind == "truncated":
            raised = self.settings.get("max_output_tokens")
            had = request.max_output_tokens
            return raised is not None and (had is None or raised > had)
        if kind in ("too_large", "not_found"):
            return self.models is not None
        if kind == "invalid_request":
            changed = any(getattr(request, k) != v for k, v in self.settings.items())
            return changed or self.models is not None
        return False


@dataclass(frozen=True, slots=True)
class LeftOut:
    """Failures of one kind a retry leaves out, and what would include them besides `--all`."""

    kind: str
    count: int
    change: str | None

    def __str__(self) -> str:
        because = self.change or "a new attempt meets the same answer"
        return f"{self.count} {self.kind} ({because})"


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """What re-running a batch's failures sends: the requests a new attempt can fix (all of
    them with `--all`), rebuilt from the log and changed as asked, on the batch's own ladder
    unless other models were named, asking the service again (`cache="refresh"`); and what it
    left out."""

    batch_id: str
    requests: list[GenerationRequest]
    models: str | None
    left_out: tuple[LeftOut, ...] = ()
    carried: Mapping[str, Any] = field(default_factory=dict)  # batch options carried over
    budget_usd: float | None = None  # the batch's budget, when what is left of it carried over

    def options(self, default_models: str | None = None) -> dict[str, Any]:
        """The batch options of the retry: its models, a refreshed cache and what carried over
        (`budget_usd`, `max_attempts`: a surface gives these when its flags leave them out)."""
        return {"models": self.models or default_models or None, "cache": "refresh", **self.carried}

    def carried_note(self) -> str | None:
        """`with the batch's --max-attempts 3 and what is left of its --budget 0.004
        ($0.0024); give them to change them.`, or None when nothing carried over."""
        said = []
        if "max_attempts" in self.carried:
            said.append(f"--max-attempts {self.carried['max_attempts']}")
        if "budget_usd" in self.carried:
            said.append(
                f"what is left of its --budget {self.budget_usd:g} "
                f"(${self.carried['budget_usd']:.4f})"
            )
        if not said:
            return None
        return f"with the batch's {_and(said)}; give them to change them."

    def note(self) -> str | None:
        """`left out 3 truncated (raise --max-tokens above 30); --all includes them`, or None."""
        if not self.left_out:
            return None
        return f"left out {_and(str(part) for part in self.left_out)}; {ALL_HINT}."

    def nothing(self) -> str | None:
        """Why this plan sends nothing (what it left out, and how to include it), or None."""
        if self.requests:
            return None
        if self.left_out:
            return f"batch {self.batch_id}: nothing to retry with these settings; {self.note()}"
        return f"batch {self.batch_id} has no failed or not-run requests."


def retry_plan(
    log: CallStore,
    batch_id: str,
    changes: RetryChanges | None = None,
    *,
    everything: bool = False,
    given: Mapping[str, Any] | None = None,
) -> RetryPlan:
    """The plan for re-running `batch_id`'s failures with `changes` (`everything`: all of them,
    whatever their kind), carrying over the batch's `max_attempts` and what is left of its
    `budget_usd` where `given` (those batch options as the retry's flags gave them, None for
    not given) leaves them out. An unknown batch is a `ConfigurationError` naming it."""
    changes = changes or RetryChanges()
    summary = log.batch_summary(batch_id)  # refuses an unknown batch, naming it
    ladder = summary["ladder"].iloc[0]
    ladder = ladder.replace(" ", "") if isinstance(ladder, str) else ""
    budget, carried = _carried(log, batch_id, given or {})
    sent: list[GenerationRequest] = []
    kept: dict[str, list[GenerationRequest]] = {}
    for replayed in replayed_requests(log.db, batch_id):
        kind = replayed.kind or "not_run"
        if everything or changes.fixes(kind, replayed.request):
            sent.append(changes.apply(replayed.request))
        else:
            kept.setdefault(kind, []).append(replayed.request)
    left_out = tuple(
        LeftOut(kind, len(requests), _change(kind, requests)) for kind, requests in kept.items()
    )
    return RetryPlan(batch_id, sent, changes.models or ladder or None, left_out, carried, budget)


def _carried(
    log: CallStore, batch_id: str, given: Mapping[str, Any]
) -> tuple[float | None, dict[str, Any]]:
    """The batch's budget, and the batch options a retry carries over from it: its attempts
    per request and what is left of its budget, each unless `given` names it (not None)."""
    rows = log.db.rows(
        "SELECT budget_usd, max_attempts, coalesce(estimated_cost, 0) FROM batch_log "
        "WHERE batch_id = ?",
        [batch_id],
    )
    budget, attempts, spent = rows[0] if rows else (None, None, 0.0)
    carried: dict[str, Any] = {}
    if attempts is not None and given.get("max_attempts") is None:
        carried["max_attempts"] = int(attempts)
    if budget is not None and given.get("budget_usd") is None:
        carried["budget_usd"] = max(0.0, budget - spent)
    return budget, carried


def _change(kind: str, requests: Sequence[GenerationRequest]) -> str | None:
    """What would include `requests` (failed as `kind`) in a retry; None: nothing would."""
    change = CHANGE_NEEDED.get(kind)
    caps = [r.max_output_tokens for r in requests if r.max_output_tokens is not None]
    if kind == "truncated" and caps:
        return f"{change} above {max(caps)}"
    return change


def retry_hint(
    results: Sequence[Result], command: str, requests: Sequence[GenerationRequest] = ()
) -> str | None:
    """The retry that will help the failures among `results` (of `requests`), in the words of
    `command` (the retry command, e.g. `scriptgen retry BATCH_ID`), or None when every request
    succeeded.

    A truncated answer needs more tokens: the command raises `--max-tokens` above what its
    request had (as the retry judges it), or, for a request that left it to the model, above
    what the answer used. The kinds it leaves out are named, with what would include them.
    """
    caps = {r.id: r.max_output_tokens for r in requests}
    kinds: dict[str, int] = {}
    used = budget_left = 0
    for result in results:
        if result.success or result.error is None:
            continue
        if stopped_by_budget(result.error):
            budget_left += 1
            continue
        kinds[result.error.kind] = kinds.get(result.error.kind, 0) + 1
        if result.error.kind == "truncated":
            cap = caps.get(result.id) or result.usage.output + result.usage.thoughts
            used = max(used, cap)
    if not kinds and not budget_left:
        return None
    raise_tokens = "truncated" in kinds and used > 0
    run = f"`{command} --max-tokens N` (N above {used})" if raise_tokens else f"`{command}`"
    helped = [k for k in kinds if k in SAME_SETTINGS or (k == "truncated" and raise_tokens)]
    left = [LeftOut(k, n, CHANGE_NEEDED.get(k)) for k, n in kinds.items() if k not in helped]
    said = [f"re-run them with {run}"] if helped else []
    if budget_left:
        said.append(
            f"{budget_left} not run: the batch stopped at its budget; `{command} --budget USD` "
            "runs them with USD to spend (else what is left of the budget)"
        )
    if left:
        said.append(f"{_and(str(part) for part in left)}: `{command} --all` includes them")
    return "; ".join(said)


def _and(parts: Iterable[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    words = list(parts)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
