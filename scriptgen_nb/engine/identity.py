"""The API key: checked before it is sent, scrubbed from messages, and its quota identity.

A key is sent as an HTTP header, so a pasted one holding a line break, a NUL or a non-ASCII
character makes the transport fail, and its error quotes the header ("Illegal header value
b'AIza...'"), key and all. `checked_api_key` strips the surrounding whitespace of a pasted key
and refuses what no header can carry, before anything is sent, without ever showing the value;
`redacted` takes the key, and any header value a transport echoed, out of a message before it
is stored or shown (defence in depth).

Rate limits belong to the project behind an API key, so what is learned about them is kept per
endpoint and key fingerprint. The fingerprint is the same on every machine (an HMAC under a
fixed constant, not a random salt) and cannot be turned back into the key. Imports nothing
outside `engine/` but the exception tree.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

from .errors import ConfigurationError

_CONSTANT = b"scriptgen_nb quota identity v1"
REDACTED = "[redacted]"
# What transports say when they refuse a header: h11's "Illegal header value b'...'",
# http.client's "Invalid header value b'...'"; the rest of the line is the value.
_HEADER_ECHO = re.compile(r"((?:illegal|invalid) header (?:value|name))\b.*", re.IGNORECASE)
# Shorter "keys" (an emulator's "k") would redact ordinary words; real keys are 39 characters.
_SHORTEST_REDACTED = 8
_CONTROL_NAMES = {"\n": "a line feed", "\r": "a carriage return", "\x00": "a NUL", "\t": "a tab"}


def key_fingerprint(api_key: str) -> str:
    """16 hex characters of HMAC-SHA256(constant, key): stable, shareable, not the key."""
    return hmac.new(_CONSTANT, api_key.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def checked_api_key(key: object, source: str) -> str:
    """The key as it will be sent: surrounding whitespace (a pasted trailing newline) stripped.

    A key that is not text, or holds a control or non-ASCII character inside, is refused with
    a `ConfigurationError` naming `source` (where the key came from: "api_key=",
    "GEMINI_API_KEY", ...) and the character's place, never the key. "" means no key.
    """
    if not isinstance(key, str):
        raise ConfigurationError(
            f"The API key from {source} is a {type(key).__name__}, not text; pass the key as a "
            "string."
        )
    key = key.strip()
    for place, char in enumerate(key, start=1):
        if not char.isascii() or not char.isprintable():
            raise ConfigurationError(
                f"The API key from {source} holds {_described(char)} at character {place} of "
                f"{len(key)}, which an HTTP header cannot carry; nothing was sent. A Gemini key "
                "is letters, digits, '-' and '_': copy it again (https://aistudio.google.com/"
                f"apikey) and set {source} to it alone."
            )
    return key


def _described(char: str) -> str:
    """A character the key may not hold, named without quoting the key around it."""
    if char in _CONTROL_NAMES:
        return _CONTROL_NAMES[char]
    code = f"U+{ord(char):04X}"
    if char.isascii():
        return f"a control character ({code})"
    name = unicodedata.name(char, "")
    return f"a non-ASCII character ({code}{' ' + name if name else ''})"


def redacted(message: str, api_key: str) -> str:
    """`message` without the key (as sent, or quoted by a repr) nor a header value a transport
    echoed: each is replaced by "[redacted]"."""
    message = _HEADER_ECHO.sub(rf"\1 {REDACTED}", message)
    if len(api_key) < _SHORTEST_REDACTED:
        return message
    for form in (api_key, repr(api_key)[1:-1], repr(api_key.encode("utf-8", "replace"))[2:-1]):
        message = message.replace(form, REDACTED)
    return message
