"""Where a batch sends when its caller names no endpoint, and whether that endpoint is simulated.

Two questions every entry point (live calls, the Batch API, the seed's project functions, a
retry) asks through `wiring.BatchOptions`, answered here once:

- **The kernel's endpoint.** With `%load_ext scriptgen_nb` the magics choose one endpoint for
  the kernel (jupyter/endpoint.py: the environment's when GEMINI_API_KEY / GOOGLE_API_KEY or
  GOOGLE_GEMINI_BASE_URL is set, else a local emulator they start and announce once; an
  emulator started on purpose wins over both). The extension registers that choice here
  (`use_session`), so a Python call in the same kernel that names no endpoint (no `base_url`,
  `api_key` or `backend`) goes where the magics go, whichever runs first, and the note is said
  once per kernel. Plain Python registers nothing: a keyless call raises `MissingApiKeyError`.
- **Simulated or real.** A base URL is asked once per process whether it is a scriptgen
  emulator (`GET {base_url}/emulator/counters`, which carries no key); Google never is, and
  neither is an endpoint that answers otherwise (a proxy in front of Google). A simulated
  endpoint's results say so (`Result.simulated`, `batch_log.simulated`), the reports keep its
  spend apart from real spend, and every emulator is one source of answers for the cache
  (store/keys.py), whatever its port.

Imports nothing from the package; no IPython.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

import httpx2

# What names an endpoint: a call that gives any of these chose its own.
ENDPOINT_OPTIONS = ("base_url", "api_key", "backend")
PROBE_PATH = "/emulator/counters"
PROBE_TIMEOUT_S = 3.0


class SessionEndpoint(Protocol):
    """The endpoint an interactive session chose (jupyter/endpoint.py's `LocalEmulator`)."""

    def use(self) -> dict[str, Any]:
        """Batch options for it (`base_url`, `api_key`, `catalogue`; {}: the environment's),
        starting what it needs and saying so once per session."""
        ...

    def current(self) -> dict[str, Any]:
        """The same options when it is already running, else {}; starts nothing."""
        ...


_session: SessionEndpoint | None = None


def use_session(session: SessionEndpoint | None) -> None:
    """Make `session` the endpoint of calls that name none (None: the environment's again)."""
    global _session
    _session = session


def with_session_endpoint(options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` with the session's endpoint filled in, when a session is registered and the
    call names no endpoint of its own; what the call gave (a catalogue, say) is kept."""
    merged = dict(options)
    if _session is None or any(merged.get(name) is not None for name in ENDPOINT_OPTIONS):
        return merged
    for name, value in _session.use().items():
        if merged.get(name) is None:
            merged[name] = value
    return merged


def session_api_key(base_url: str | None) -> str | None:
    """The session's API key when its running endpoint is `base_url` (a batch recorded there
    is resumed with it), else None."""
    current = _session.current() if _session is not None else {}
    if base_url is None or current.get("base_url") != base_url:
        return None
    key: str | None = current.get("api_key")
    return key


_kinds: dict[str, bool] = {}
_lock = threading.Lock()


def is_emulator(base_url: str) -> bool:
    """Whether `base_url` is a scriptgen emulator; asked once per process (an endpoint that
    cannot be reached is asked again next time, and taken as real meanwhile)."""
    url = base_url.rstrip("/")
    with _lock:
        known = _kinds.get(url)
    if known is not None:
        return known
    try:
        response = httpx2.get(url + PROBE_PATH, timeout=PROBE_TIMEOUT_S)
    except (httpx2.HTTPError, OSError, ValueError):
        return False
    answer = _json(response) if response.status_code == 200 else None
    kind = isinstance(answer, dict) and {"requests", "models"} <= set(answer)
    with _lock:
        _kinds[url] = kind
    return kind


def emulator_instance(base_url: str) -> str | None:
    """Which life of an emulator's quota windows answers at `base_url` (it changes when the
    emulator is reset or replaced on the same port), or None when it cannot tell. Asked anew
    each time, and only of an endpoint already known to be an emulator: never of Google."""
    url = base_url.rstrip("/")
    if not is_emulator(url):
        return None
    try:
        response = httpx2.get(url + PROBE_PATH, timeout=PROBE_TIMEOUT_S)
    except (httpx2.HTTPError, OSError, ValueError):
        return None
    answer = _json(response) if response.status_code == 200 else None
    instance = answer.get("instance") if isinstance(answer, dict) else None
    return instance if isinstance(instance, str) else None


def forget_endpoint_kinds() -> None:
    """Ask every endpoint again (tests: a later emulator or server may get an earlier port)."""
    with _lock:
        _kinds.clear()


def _json(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


__all__ = [
    "ENDPOINT_OPTIONS",
    "SessionEndpoint",
    "emulator_instance",
    "forget_endpoint_kinds",
    "is_emulator",
    "session_api_key",
    "use_session",
    "with_session_endpoint",
]
