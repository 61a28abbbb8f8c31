"""The endpoint's own model list (`GET models`): which model names are valid, read once.

The list decides first (`models.ModelCatalogue.named`): a name it lists is valid even when the
catalogue does not know it, and a catalogue model it no longer lists is retired. It is read with
the batch's key, base URL and API version through google-genai's synchronous client (SDK retries
off, a timeout of a few seconds), only models that can `generateContent` kept, and cached for
the process per (endpoint, API version, key fingerprint): never under the key itself. When it
cannot be had (no network, a timeout, a 403, a key the endpoint refuses, an answer it cannot
read) the catalogue decides alone and nothing is said: a real problem with the key or the
endpoint surfaces, with its own error, at the batch's first call. Imports nothing outside
`engine/`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import httpx2
from google.genai import Client, errors, types

from .backend import API_VERSION, GOOGLE_ENDPOINT
from .identity import key_fingerprint
from .models import ListedModel, Listing

LIST_TIMEOUT_S = 5.0
GENERATE = "generateContent"

_cache: dict[tuple[str, str, str], Listing | None] = {}
_lock = threading.Lock()


def endpoint_models(
    api_key: str,
    *,
    base_url: str | None = None,
    api_version: str | None = None,
    timeout_s: float = LIST_TIMEOUT_S,
) -> Listing | None:
    """The endpoint's generation models by short name, or None when the list cannot be had;
    asked once per process per (endpoint, API version, key)."""
    version = api_version or API_VERSION
    where = (
        base_url.rstrip("/") if base_url else GOOGLE_ENDPOINT,
        version,
        key_fingerprint(api_key),
    )
    with _lock:  # one asker per process: the others wait for its answer
        if where not in _cache:
            _cache[where] = read_endpoint_models(api_key, base_url, version, timeout_s)
        return _cache[where]


def forget_endpoint_models() -> None:
    """Drop the cached lists (the next batch asks again): for tests, or after an endpoint's
    models changed within this process."""
    with _lock:
        _cache.clear()


def read_endpoint_models(
    api_key: str, base_url: str | None, api_version: str, timeout_s: float
) -> Listing | None:
    """Ask the endpoint for its models (every page); None when it cannot answer."""
    options = types.HttpOptions(
        base_url=base_url,
        api_version=api_version,
        timeout=int(timeout_s * 1000),
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    try:
        with Client(api_key=api_key, http_options=options) as client:
            return listing(client.models.list(config={"page_size": 1000}))
    except (errors.APIError, httpx2.HTTPError, OSError, ValueError):
        return None


def listing(models: Iterable[types.Model]) -> Listing:
    """The models that can generate content, by short name (without `models/`)."""
    listed = {}
    for model in models:
        actions = model.supported_actions
        if not model.name or (actions is not None and GENERATE not in actions):
            continue
        name = model.name.removeprefix("models/")
        listed[name] = ListedModel(name, model.input_token_limit, model.output_token_limit)
    return listed
