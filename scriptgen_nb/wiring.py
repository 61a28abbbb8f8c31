"""Wiring one batch: resolving key, endpoint and ladder, and joining engine, backend and log.

`BatchOptions` holds the arguments every entry point shares (a call that names no endpoint
takes the kernel's, when the Jupyter extension registered one: endpoints.py); `prepare()` turns
them and the requests into a `PreparedBatch`: the engine with its backend, the call log's
session (cache, quota memory, recorder), the seed's `on_progress` and the progress frontend
(`progress=`) as listeners, and the frontend as the place that says when the log's file is
held by another process (before it is shown, stderr says so). The engine knows none of this.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from importlib.metadata import version
from typing import Any, Literal

from . import __version__, endpoints
from .batch_api.jobs import BatchApiSettings
from .batch_api.plan import check_mode, parse_deadline
from .engine.backend import GOOGLE_ENDPOINT, Backend, GeminiBackend
from .engine.checks import check_number
from .engine.errors import ConfigurationError, MissingApiKeyError, RequestRefused
from .engine.identity import checked_api_key, key_fingerprint
from .engine.listing import endpoint_models
from .engine.models import Listing, ModelCatalogue, ModelSpec, default_catalogue, ladder_notices
from .engine.policy import Backoff, RetryPolicy, plan_concurrency
from .engine.runner import BatchEngine, CancelToken, EngineConfig, Listener, Routing
from .engine.values import Event, GenerationRequest, RequestFinished, Result
from .progress import ProgressFrontend, choose_progress
from .quota import QuotaSetting, open_ledger, quota_place
from .store import Database, LockWait, StoreError, default_db_path, open_database
from .store.lock_wait import LockWatch, waiting_up_to
from .store.recorder import LOG_WAIT_S, BatchInfo
from .store.session import CACHE_MODES, BatchSession, CacheMode, quota_history

ENV_BASE_URL = "GOOGLE_GEMINI_BASE_URL"
ENV_KEYS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

Models = str | ModelSpec | Sequence[str | ModelSpec] | None
DbArgument = str | os.PathLike[str] | Database | Literal[False] | None


@dataclass
class BatchOptions:
    """The arguments every entry point shares (see `batch_generate` for their meaning)."""

    on_progress: Callable[[int, int | None], None] | None = None
    max_concurrency: int | str | None = None
    models: Models = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never in reprs or logs
    api_version: str | None = None
    budget_usd: float | None = None
    timeout_s: float = 60.0
    max_attempts: int = 6
    # Seconds of nothing but 429s without details, on every model, before the rest of the batch
    # ends rate_limited (the service is overloaded or the quota is used elsewhere).
    overload_patience_s: float = 600.0
    routing: Routing = "preference"
    chunk_size: int | None = None
    db: DbArgument = None
    # Seconds a batch waits for its call log while another process holds the file, before it
    # starts and at its end (meanwhile it waits for as long as it runs).
    log_wait_s: float = LOG_WAIT_S
    cache: CacheMode = "use"
    store_text: bool = True
    catalogue: ModelCatalogue | None = None
    listeners: Sequence[Listener] = ()
    backend: Backend | None = None
    cancel: CancelToken | None = None
    backoff: Backoff = field(default_factory=Backoff)
    # "auto": a panel in Jupyter, a text bar on a terminal's stderr, else none; also "widget",
    # "text". None (no progress) for library calls; the magics ask for "auto".
    progress: str | None = None
    # "live" (paced calls), "batch_api" (Google's Batch API) or "auto" (batch_api/plan.py).
    mode: str = "live"
    # For "auto": seconds, a timedelta, "30m"/"2h"/"1d" or a datetime; None: the expected
    # Batch API turnaround.
    deadline: Any = None
    batch_api: BatchApiSettings | None = None  # how Batch API jobs are built and watched
    # The quota ledger shared with other processes (quota/__init__.py): None (SCRIPTGEN_QUOTA,
    # else the user's cache directory), "off" / False, a redis:// URL or a SQLite file's path.
    quota: QuotaSetting = None
    deadline_s: float | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> BatchOptions:
        """Build from keyword options; an unknown name is a configuration error, not a TypeError.
        Options that name no endpoint get the kernel's, if one is registered (endpoints.py)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(
                f"Unknown batch option(s) {unknown}; the options are: {', '.join(sorted(known))}."
            )
        return cls(**endpoints.with_session_endpoint(options))

    def __post_init__(self) -> None:
        if self.cache not in CACHE_MODES:
            raise ConfigurationError(
                f"cache={self.cache!r}: use 'use' (serve earlier answers), 'refresh' (ask "
                "again, keep the new answer) or 'off' (neither read nor write the cache)."
            )
        check_number("budget_usd", self.budget_usd, low=0, optional=True, unit="US dollars")
        check_number("timeout_s", self.timeout_s, low=0, above=True, unit="seconds")
        check_number("max_attempts", self.max_attempts, low=1, whole=True, unit="attempts")
        check_number("overload_patience_s", self.overload_patience_s, low=0, above=True)
        check_number("chunk_size", self.chunk_size, low=1, whole=True, optional=True)
        if not isinstance(self.backoff, Backoff):
            raise ConfigurationError(
                f"backoff={self.backoff!r}: pass scriptgen_nb.engine.policy.Backoff(initial_s, "
                "factor, max_s)."
            )
        check_number("log_wait_s", self.log_wait_s, low=0, unit="seconds")
        callables: list[tuple[str, object]] = []
        if self.on_progress is not None:
            callables.append(("on_progress", self.on_progress))
        callables += [("listeners", listener) for listener in self.listeners]
        for name, value in callables:
            if not callable(value):
                raise ConfigurationError(
                    f"{name}: {value!r} is not callable (a function of the event)."
                )
        if self.cancel is not None and not isinstance(self.cancel, CancelToken):
            raise ConfigurationError(f"cancel={self.cancel!r}: pass a scriptgen_nb.CancelToken().")
        quota_place(self.quota)  # a setting of the wrong type is refused here, not mid-batch
        check_mode(self.mode)
        self.deadline_s = parse_deadline(self.deadline)
        if self.deadline is not None and self.mode != "auto":
            raise ConfigurationError(
                f"deadline={self.deadline!r} is for mode='auto' (it chooses live calls or the "
                f"Batch API by it); with mode={self.mode!r} leave it out."
            )
        if self.batch_api is not None and not isinstance(self.batch_api, BatchApiSettings):
            raise ConfigurationError(
                f"batch_api={self.batch_api!r}: pass scriptgen_nb.BatchApiSettings(...)."
            )

    def ladder(self) -> list[ModelSpec]:
        """The batch's models (see `ladder_and_notices`)."""
        return self.ladder_and_notices()[0]

    def ladder_and_notices(self) -> tuple[list[ModelSpec], tuple[str, ...]]:
        """The batch's models: `models` resolved against the catalogue and, when it can be
        read, the endpoint's own model list (which decides first); and what the user should
        know about them (models left out as not listed, retired ones named anyway, unknown
        prices). With `budget_usd`, every model must have a known price."""
        catalogue = self.catalogue or default_catalogue()
        left_out: list[str] = []
        ladder = catalogue.resolve(self.models, listed=self.listed_models(), left_out=left_out)
        unpriced = [spec.name for spec in ladder if not spec.priced]
        if self.budget_usd is not None and unpriced:
            raise ConfigurationError(
                f"budget_usd={self.budget_usd!r} cannot be kept: the price of "
                f"{', '.join(unpriced)} is unknown. Pass models=[ModelSpec(name=..., "
                "input_usd_per_1m=..., output_usd_per_1m=...)] for it, add it to a catalogue "
                "file (SCRIPTGEN_CATALOGUE), or leave the budget out."
            )
        return ladder, (*left_out, *ladder_notices(ladder))

    def listed_models(self) -> Listing | None:
        """The endpoint's model list (read once per process, `engine/listing.py`), or None:
        when no name needs resolving, with a `backend` given (tests), without a key, or when
        the endpoint cannot answer."""
        models = self.models
        names = (
            models is None
            or isinstance(models, str)
            or (isinstance(models, Sequence) and any(isinstance(m, str) for m in models))
        )
        if not names or self.backend is not None:
            return None
        try:
            key = self.resolved_api_key()
        except MissingApiKeyError:
            return None
        return endpoint_models(key, base_url=self.resolved_base_url(), api_version=self.api_version)

    def resolved_api_key(self) -> str:
        """The key to send with: `api_key`, else GEMINI_API_KEY / GOOGLE_API_KEY; none is an
        error that names them and the emulator. The one place keys are resolved (live calls
        and the Batch API alike), so each is checked here before anything is sent: a pasted
        newline around it is dropped, a character no HTTP header can carry is refused."""
        given = [("api_key=", self.api_key), *((k, os.environ.get(k)) for k in ENV_KEYS)]
        for source, value in given:
            key = checked_api_key(value, source) if value is not None else ""
            if key:
                return key
        raise MissingApiKeyError(self.resolved_base_url())

    def resolved_base_url(self) -> str | None:
        """Where to send: `base_url`, else GOOGLE_GEMINI_BASE_URL, else None (Google)."""
        url = self.base_url or os.environ.get(ENV_BASE_URL) or None
        return url.rstrip("/") if url else None

    def endpoint(self) -> str:
        """The endpoint's name in the call log and cache keys (as `Backend.endpoint`)."""
        return self.resolved_base_url() or GOOGLE_ENDPOINT

    def simulated(self) -> bool:
        """Whether the answers will be simulated: the base URL is an emulator (asked once per
        process, endpoints.is_emulator). Google is real; so is a custom `backend` (tests)."""
        url = self.resolved_base_url()
        return self.backend is None and url is not None and endpoints.is_emulator(url)

    def key_fingerprint(self) -> str:
        """The fingerprint of the key sent with (engine/identity.py): with `endpoint()`, the
        quota identity learned limits are kept for. A custom `backend` with no key to resolve
        is the keyless identity at its endpoint, the fingerprint of ""."""
        try:
            return key_fingerprint(self.resolved_api_key())
        except MissingApiKeyError:
            if self.backend is None:
                raise
            return key_fingerprint("")

    def quota_endpoint(self, endpoint: str | None = None) -> str:
        """The endpoint (`endpoint()`, or a custom backend's) as the shared quota ledger knows
        it: an emulator's with the life of its quota windows (a reset, or a new emulator on an
        old port, starts them empty)."""
        endpoint = endpoint or self.endpoint()
        url = self.resolved_base_url()
        instance = endpoints.emulator_instance(url) if self.simulated() and url else None
        return f"{endpoint}#{instance}" if instance else endpoint

    def build_backend(self, max_connections: int) -> Backend:
        if self.backend is not None:
            return self.backend
        return GeminiBackend(
            self.resolved_api_key(),
            base_url=self.resolved_base_url(),
            api_version=self.api_version,
            timeout_s=self.timeout_s,
            max_connections=max_connections,
        )

    def open_log(self, *, create: bool = True, wait: LockWait | None = None) -> Database | None:
        """The call log (None when `db=False`); opened before any request is sent.

        `create=False` (planning, a dry run): None when the file is not there yet, and opened
        read-only when it is, so nothing that sends nothing leaves a log behind or changes one
        (a log on a read-only place can be planned with). While another process holds the file,
        opening waits as `wait` says (default: up to `log_wait_s`, said on stderr after a few
        seconds); so do the opened log's units of work that bring no wait of their own.
        """
        if self.db is False:
            return None
        if isinstance(self.db, Database):
            return self.db
        if not create and isinstance(self.db, str | os.PathLike | None):
            path = os.fspath(self.db) if self.db is not None else default_db_path()
            if path != ":memory:" and not os.path.exists(path):
                return None
        wait = wait or waiting_up_to(self.log_wait_s)
        return open_database(self.db, read_only=not create, wait=wait)

    def lock_wait(self, cancel: CancelToken) -> LockWait:
        """How a batch waits while another process holds its log's file: up to `log_wait_s`
        (its opening, first and last writes; the rest as long as it runs), giving up once it is
        cancelled; said on stderr until `prepare` hands the saying to the progress frontend."""
        return LockWait(self.log_wait_s, lambda: cancel.cancelled, LockWatch())

    def prepare(
        self,
        requests: Iterable[GenerationRequest],
        *,
        refused: Callable[[], ConfigurationError | None] | None = None,
    ) -> PreparedBatch:
        """Build everything a run needs; configuration errors surface here, before any call.

        `refused`: for requests checked as they are taken (a generator), the refusal that ended
        them, if one did (see `PreparedBatch.stream`).
        """
        ladder, notices = self.ladder_and_notices()
        plan = plan_concurrency(self.max_concurrency, ladder)
        cancel = self.cancel or CancelToken()  # shared with the panel, whose Cancel button uses it
        wait = self.lock_wait(cancel)
        log = self.open_log(wait=wait)
        backend = self.build_backend(plan.max_in_flight)
        fingerprint = self.key_fingerprint()
        # The seed's formula paces nothing, by design: it shares no quota either.
        quota = self.quota if plan.paced else False
        ledger, ledger_notice = None, None
        if quota_place(quota).kind != "off":  # (an emulator's endpoint is asked its instance)
            endpoint = self.quota_endpoint(backend.endpoint)
            ledger, ledger_notice = open_ledger(quota, endpoint, fingerprint)
        if ledger_notice is not None:
            notices = (*notices, ledger_notice)
        config = EngineConfig(
            ladder=ladder,
            plan=plan,
            routing=self.routing,
            timeout_s=self.timeout_s,
            retry=RetryPolicy(
                max_attempts=self.max_attempts,
                backoff=self.backoff,
                overload_patience_s=self.overload_patience_s,
            ),
            budget_usd=self.budget_usd,
            chunk_size=self.chunk_size,
            history=quota_history(log, ladder, backend.endpoint, fingerprint) if log else {},
            notices=notices,
            simulated=self.simulated(),
            ledger=ledger,
        )
        total = len(requests) if isinstance(requests, Sequence) else None
        progress = choose_progress(self.progress, cancel, total=total)
        listeners = list(self.listeners)
        frontend = progress or next(
            (f for f in listeners if isinstance(f, ProgressFrontend)), None
        )  # the one chosen, or one given as a listener (the command line's bar)
        if frontend is not None and wait.watch is not None:
            wait.watch.say = frontend.log_waiting
        if self.on_progress is not None:
            listeners.append(progress_listener(self.on_progress))
        if progress is not None:
            listeners.append(progress)
        session = None
        if log is not None:
            info = self._batch_info(config, backend, fingerprint)
            session = BatchSession(log, info, [m.name for m in ladder], wait=wait)
            listeners.insert(0, session.recorder)
            requests = session.requests(requests)
        engine = BatchEngine(
            backend,
            config,
            listeners=listeners,
            cancel=cancel,
            resolve=session.resolve if session else None,
        )
        return PreparedBatch(engine, requests, total, session, progress, refused)

    def _batch_info(self, config: EngineConfig, backend: Backend, fingerprint: str) -> BatchInfo:
        return BatchInfo(
            batch_id=config.batch_id,
            mode="live",
            endpoint=backend.endpoint,
            cache_mode=self.cache,
            store_text=self.store_text,
            package_version=__version__,
            sdk_version=version("google-genai"),
            key_fingerprint=fingerprint,
            notices=config.notices,
            simulated=config.simulated,
            budget_usd=self.budget_usd,
            max_attempts=self.max_attempts,
        )


@dataclass
class PreparedBatch:
    """An engine ready to run its requests, with the log session to close afterwards."""

    engine: BatchEngine
    requests: Iterable[GenerationRequest]
    total: int | None
    session: BatchSession | None
    progress: ProgressFrontend | None = None
    refused: Callable[[], ConfigurationError | None] | None = None

    def unlogged(self) -> list[str]:
        """Once the batch raised a `StoreError`: the ids of the requests answered (and paid
        for) whose results the call log could not take (none without a log)."""
        return self.session.unlogged() if self.session is not None else []

    @contextmanager
    def progress_shown(self) -> Iterator[None]:
        """Show the progress frontend around the run; enter and leave in the caller's thread.

        A panel is displayed before the batch starts and its summary printed after it ends by
        the caller's thread, so the output lands in the caller's cell (notes/jupyter.md §3.3).
        """
        if self.progress is None:
            yield
            return
        self.progress.show()
        try:
            yield
        finally:
            self.progress.close()

    async def stream(self) -> AsyncIterator[Result]:
        """Run the batch, yielding results as they finish; closes the backend and the log.

        A request refused when it was reached (`refused`) ended the requests there: once those
        taken have run to their end, the batch is logged failed and `RequestRefused` raised.
        """
        taken = 0
        try:
            async for result in self.engine.stream(self.requests, self.total):
                taken += 1
                yield result
        finally:
            await self.engine.backend.aclose()
            refusal = self.refused() if self.refused is not None else None
            if self.session is not None:
                # "running" here means the engine never got to end the batch: it failed.
                failed = self.engine.status in ("running", "failed") or refusal is not None
                try:
                    await asyncio.to_thread(self.session.close, failed=failed)
                except StoreError:
                    if not failed:
                        raise
                    # The batch already failed (most likely on this same log): its error wins.
        if refusal is not None:
            raise RequestRefused(refusal, taken)


def progress_listener(on_progress: Callable[[int, int | None], None]) -> Listener:
    """The seed's `onProgress(completed, total)` as an engine listener."""

    def listener(event: Event) -> None:
        if isinstance(event, RequestFinished):
            on_progress(event.done, event.total)

    return listener
