"""The API key: checked before it is sent, scrubbed from messages; its fingerprint stable
everywhere, distinct per key, never the key."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys

import pytest

from scriptgen_nb.engine.errors import ConfigurationError
from scriptgen_nb.engine.identity import checked_api_key, key_fingerprint, redacted


def test_the_fingerprint_is_16_hex_characters_of_the_documented_hmac() -> None:
    expected = hmac.new(b"scriptgen_nb quota identity v1", b"AIza-secret", hashlib.sha256)
    assert key_fingerprint("AIza-secret") == expected.hexdigest()[:16]
    assert len(key_fingerprint("k")) == 16
    int(key_fingerprint("k"), 16)  # hexadecimal


def test_the_fingerprint_is_the_same_in_another_process() -> None:
    code = "from scriptgen_nb.engine.identity import key_fingerprint as f; print(f('AIza-x'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == key_fingerprint("AIza-x")


def test_different_keys_have_different_fingerprints_that_do_not_contain_them() -> None:
    one, two = key_fingerprint("AIzaSyA-one"), key_fingerprint("AIzaSyA-two")
    assert one != two
    assert "AIza" not in one + two


def test_a_pasted_key_loses_the_whitespace_around_it() -> None:
    assert checked_api_key(" AIza-secret\r\n", "GEMINI_API_KEY") == "AIza-secret"
    assert checked_api_key("\n", "GEMINI_API_KEY") == ""  # nothing but a newline: no key


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("AIza\nsecret-key", "a line feed at character 5 of 15"),
        ("AIza\rsecret-key", "a carriage return at character 5"),
        ("AIza\x00secret-key", "a NUL at character 5"),
        ("AIza\x7fsecret-key", r"a control character \(U\+007F\)"),
        ("AIza-secret-k\u00e9y", r"a non-ASCII character \(U\+00E9 LATIN SMALL LETTER E WITH"),
    ],
)
def test_a_character_no_header_can_carry_is_named_never_the_key(key: str, named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"API key from api_key= holds {named}") as refused:
        checked_api_key(key, "api_key=")
    assert "secret" not in str(refused.value) and "AIza" not in str(refused.value)


def test_a_key_that_is_not_text_is_refused_by_its_type_alone() -> None:
    with pytest.raises(ConfigurationError, match="is a bytes, not text") as refused:
        checked_api_key(b"AIza-secret", "api_key=")
    assert "secret" not in str(refused.value)


def test_redacted_takes_out_the_key_and_any_header_value_a_transport_quoted() -> None:
    key = "AIzaSy-secret-0123"
    assert redacted(f"HTTP 400: bad key {key}.", key) == "HTTP 400: bad key [redacted]."
    assert redacted(f"got {key.encode()!r}", key) == "got b'[redacted]'"
    echoed = "LocalProtocolError: Illegal header value b'AIza\\nSy-other'"
    assert redacted(echoed, key) == "LocalProtocolError: Illegal header value [redacted]"
    assert redacted("Invalid header value b'x'", "k") == "Invalid header value [redacted]"
    assert redacted("a k in a sentence", "k") == "a k in a sentence"  # too short to be a key
