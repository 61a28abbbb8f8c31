"""Where the shared quota ledger lives (engine/ledger.py), and opening it for one quota identity.

`quota=` (else `SCRIPTGEN_QUOTA`) says where:

- unset: a SQLite file in the user's cache directory (`default_ledger_path()`), so every kernel,
  script and `scriptgen run` of this user on this machine paces one quota together (the default);
- `"off"` (or `False`): each batch paces alone, as before the ledger (429s still teach it);
- `"redis://host:6379/0"` (or `rediss://`, `unix://`): a Redis server, for many machines
  (`pip install scriptgen_nb[redis]`);
- anything else: the path of a SQLite file (tests use one of their own).

A file on a network file system (NFS, SMB, ...) is not used, since SQLite's locks cannot be
trusted there; nor is one that cannot be opened. Either is said once per process, and the
batches pace alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

from ..engine.errors import ConfigurationError, QuotaLedgerError
from ..engine.ledger import QuotaLedger, windows_at
from ..engine.limits import window_margin_s
from ..engine.models import ModelSpec
from .local import LocalLedger

QUOTA_ENV = "SCRIPTGEN_QUOTA"
OFF_WORDS = frozenset({"off", "0", "false", "no", "none"})
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# File systems whose locks SQLite cannot rely on (its documentation: "SQLite Over a Network").
NETWORK_FILE_SYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs"}
)
QuotaSetting = str | os.PathLike[str] | Literal[False] | None

_said: set[str] = set()  # notices already given in this process


@dataclass(frozen=True, slots=True)
class QuotaPlace:
    """Where a quota setting points: nowhere ("off"), a local file or a Redis server."""

    kind: Literal["off", "local", "redis"]
    where: str = ""


def default_ledger_path() -> Path:
    """The user's own ledger file: `quota.sqlite` in scriptgen_nb's cache directory."""
    return platformdirs.user_cache_path("scriptgen_nb") / "quota.sqlite"


def quota_place(setting: QuotaSetting = None) -> QuotaPlace:
    """Where `setting` (else `SCRIPTGEN_QUOTA`, else the default file) points."""
    if setting is False:
        return QuotaPlace("off")
    if setting is None:
        setting = os.environ.get(QUOTA_ENV) or None
    if setting is None:
        return QuotaPlace("local", str(default_ledger_path()))
    if not isinstance(setting, str | os.PathLike):
        raise ConfigurationError(
            f"quota={setting!r}: pass 'off', a redis:// URL, or the path of a SQLite file."
        )
    text = os.fspath(setting).strip()
    if not text:
        return QuotaPlace("local", str(default_ledger_path()))
    if text.lower() in OFF_WORDS:
        return QuotaPlace("off")
    if text.lower().startswith(REDIS_SCHEMES):
        return QuotaPlace("redis", text)
    return QuotaPlace("local", str(Path(text).expanduser()))


def quota_identity(endpoint: str, fingerprint: str) -> str:
    """The quota a ledger's rows belong to: the exact endpoint and the key's fingerprint."""
    return f"{endpoint} {fingerprint}"


def open_ledger(
    setting: QuotaSetting, endpoint: str, fingerprint: str
) -> tuple[QuotaLedger | None, str | None]:
    """The ledger for one batch at this quota identity, and a notice to give (once per process)
    when the setting's ledger cannot be used and the batch will pace alone."""
    place = quota_place(setting)
    if place.kind == "off":
        return None, None
    network = network_file_system(Path(place.where)) if place.kind == "local" else None
    if network is not None:
        return None, _once(
            f"The quota ledger {place.where} is on a network file system ({network}), where "
            "SQLite's locks cannot be trusted: each batch paces alone. Set SCRIPTGEN_QUOTA to "
            "a local path, a redis:// URL for many machines, or off."
        )
    try:
        ledger = _ledger_at(place, quota_identity(endpoint, fingerprint))
        ledger.check()
    except QuotaLedgerError as exc:
        instead = "a Redis server that answers" if place.kind == "redis" else "a writable path"
        return None, _once(
            f"{str(exc).rstrip('.')}; each batch paces alone (429s still teach it). Set "
            f"SCRIPTGEN_QUOTA to {instead}, or off to say nothing."
        )
    return ledger, None


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """What every process at one quota has used of a model's windows, by the shared ledger."""

    this_minute: int  # requests
    tokens_this_minute: int  # input tokens
    today: int  # requests
    other_processes: int  # other processes with requests in the minute


def quota_usage(
    setting: QuotaSetting, endpoint: str, fingerprint: str, specs: Iterable[ModelSpec]
) -> dict[str, QuotaUsage]:
    """Each model's use of its windows now, every process at this quota identity together;
    empty when the ledger is off, not there yet (never created here) or cannot be read."""
    place = quota_place(setting)
    if place.kind == "off" or (place.kind == "local" and not Path(place.where).exists()):
        return {}
    wall = time.time()
    try:
        ledger = _ledger_at(place, quota_identity(endpoint, fingerprint))
        try:
            return {
                spec.name: QuotaUsage(
                    *ledger.usage(
                        spec.name, now=wall, windows=windows_at(spec, wall, window_margin_s(spec))
                    )
                )
                for spec in specs
            }
        finally:
            ledger.close()
    except QuotaLedgerError:
        return {}  # for display only: the table then shows what the call log knows


def _ledger_at(place: QuotaPlace, quota: str) -> QuotaLedger:
    """The ledger `place` points at, for `quota` (not opened yet)."""
    if place.kind == "redis":
        from .redis import open_redis_ledger  # redis is an optional extra

        return open_redis_ledger(place.where, quota)
    return LocalLedger(place.where, quota)


def _once(notice: str) -> str | None:
    if notice in _said:
        return None
    _said.add(notice)
    return notice


def network_file_system(path: Path, mounts: str | None = None) -> str | None:
    """The network file system type `path` is (or will be) on, or None
    (a local one, or a system without /proc/self/mountinfo to tell). `mounts` is that table's
    text (read from /proc when None)."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
        except OSError:
            return None
    place = path.absolute()  # links resolved in the part that exists, the rest as given
    existing = place
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    place = existing.resolve() / place.relative_to(existing)
    best, kind = "", ""
    for line in mounts.splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        mount = parts[4].replace("\\040", " ")
        inside = place == Path(mount) or Path(mount) in place.parents
        if inside and len(mount) >= len(best):
            best, kind = mount, rest.split()[0]
    base = kind.removeprefix("fuse.")
    return kind if kind in NETWORK_FILE_SYSTEMS or base in {"sshfs", "s3fs"} else None


__all__ = [
    "QUOTA_ENV",
    "LocalLedger",
    "QuotaPlace",
    "QuotaUsage",
    "default_ledger_path",
    "network_file_system",
    "open_ledger",
    "quota_identity",
    "quota_place",
    "quota_usage",
]
