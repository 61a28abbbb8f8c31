"""The quota identity: which Google Cloud project's quota a batch uses, without the key.

Rate limits belong to the project behind an API key, so what is learned about them is kept per
endpoint and key fingerprint. The fingerprint is the same on every machine (an HMAC under a
fixed constant, not a random salt) and cannot be turned back into the key. Imports nothing.
"""

from __future__ import annotations

import hashlib
import hmac

_CONSTANT = b"scriptgen_nb quota identity v1"


def key_fingerprint(api_key: str) -> str:
    """16 hex characters of HMAC-SHA256(constant, key): stable, shareable, not the key."""
    return hmac.new(_CONSTANT, api_key.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
