"""The API key's fingerprint: stable everywhere, distinct per key, never the key."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys

from scriptgen_nb.engine.identity import key_fingerprint


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
