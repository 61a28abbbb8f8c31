"""The quota identity's key part: a fingerprint of an API key that never reveals the key.

Google counts quota per project, and a key names a project, so what the engine learns or caches
per endpoint is kept per key too, but never under the key itself: under an HMAC-SHA256 of it
with a fixed, public constant, truncated. The same key gives the same fingerprint in every
process and on every machine (so a call log shared between them agrees), and the fingerprint
cannot be turned back into the key. Imports nothing outside the standard library.
"""

from __future__ import annotations

import hashlib
import hmac

# Changing this constant (or the length) forgets everything stored under the old fingerprints.
FINGERPRINT_KEY = b"scriptgen_nb quota identity v1"
FINGERPRINT_HEX = 16


def key_fingerprint(api_key: str) -> str:
    """16 hex characters of HMAC-SHA256(FINGERPRINT_KEY, api_key): stable, not reversible."""
    digest = hmac.new(FINGERPRINT_KEY, api_key.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:FINGERPRINT_HEX]
