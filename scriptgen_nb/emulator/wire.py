"""Wire forms shared by the emulator's listable resources: timestamps and page tokens.

Owns `timestamp` (RFC 3339 in UTC with nanoseconds, as Google writes `createTime`) and `page`
(one page of a list plus the opaque `nextPageToken` for the rest), used by the models, batches
and files lists alike. Imports nothing from the engine.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Sequence
from typing import TypeVar

from .errors import ApiFailure

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "page", "timestamp"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_T = TypeVar("_T")


def timestamp(seconds: float) -> str:
    """`2025-12-10T18:27:01.407650000Z` for a Unix time."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def page(
    items: Sequence[_T], page_size: str | None, page_token: str | None
) -> tuple[Sequence[_T], str | None]:
    """The page of `items` that the query asks for, and the token of the next page (or None).

    Tokens are opaque offsets, so a list must keep its order between calls (oldest first).
    A size of 0 or less means the default; a bad size or token is Google's 400.
    """
    try:
        size = int(page_size) if page_size else DEFAULT_PAGE_SIZE
        start = int(base64.urlsafe_b64decode(page_token.encode()).decode()) if page_token else 0
    except (ValueError, binascii.Error):
        raise ApiFailure(400, "Invalid page_size or page_token.") from None
    if start < 0:
        raise ApiFailure(400, "Invalid page_size or page_token.")
    if size <= 0:
        size = DEFAULT_PAGE_SIZE
    size = min(size, MAX_PAGE_SIZE)
    end = start + size
    token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[start:end], token
