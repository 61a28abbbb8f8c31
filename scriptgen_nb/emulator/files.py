"""The Files API's storage: resumable upload sessions, stored files and generated result files.

Owns `FileStore`. Contents live in a private temporary directory, never in memory, so a batch's
JSONL input of up to `max_file_bytes` (2 GiB by default, Google's limit) is written as its
chunks arrive and a result file is read back out in pieces. An upload session is named by an
unguessable id that travels in the upload URL, which carries no API key (as with Google's):
knowing the id is what allows sending the bytes. Names are `files/` plus lowercase letters,
digits and dashes, the form the SDK can read back out of a URI. The directory is made on first
use and removed when the store is garbage-collected or the interpreter exits; files are not
expired. Imports nothing from the engine.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ApiFailure
from .wire import timestamp

__all__ = ["FileStore", "StoredFile"]

_NAME = re.compile(r"^files/[a-z0-9][a-z0-9-]{0,39}$")
_PIECE_BYTES = 1024 * 1024
_LIFETIME_S = 48 * 3600  # what Google states as expirationTime; not enforced here
_COMMANDS = frozenset({"upload", "finalize"})


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A complete file: uploaded by a client or generated (a batch job's results)."""

    name: str  # "files/abc123"
    display_name: str
    mime_type: str
    size: int
    sha256: str  # hex
    generated: bool
    created: float  # Unix time
    path: Path

    def resource(self, origin: str, api_version: str) -> dict[str, Any]:
        """The File resource as the API returns it; `origin` is `http://host:port`."""
        file_id = self.name.removeprefix("files/")
        body: dict[str, Any] = {
            "name": self.name,
            "mimeType": self.mime_type,
            "sizeBytes": str(self.size),
            "createTime": timestamp(self.created),
            "updateTime": timestamp(self.created),
            "expirationTime": timestamp(self.created + _LIFETIME_S),
            # Google sends the base64 of the hex digest.
            "sha256Hash": base64.b64encode(self.sha256.encode()).decode(),
            "uri": f"{origin}/{api_version}/{self.name}",
            "state": "ACTIVE",
            "source": "GENERATED" if self.generated else "UPLOADED",
        }
        if self.display_name:
            body["displayName"] = self.display_name
        if self.generated:
            body["downloadUri"] = (
                f"{origin}/download/{api_version}/files/{file_id}:download?alt=media"
            )
        return body


@dataclass(slots=True)
class _Upload:
    name: str
    display_name: str
    mime_type: str
    declared_size: int | None
    path: Path
    received: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _missing(name: str) -> ApiFailure:
    # Google answers 403, not 404, for a file that does not exist (or is no longer there).
    file_id = name.removeprefix("files/")
    return ApiFailure(
        403, f"You do not have permission to access the File {file_id} or it may not exist."
    )


class FileStore:
    """Stored files and open upload sessions, thread-safe."""

    def __init__(self, max_file_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self._max_bytes = max_file_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}
        self._uploads: dict[str, _Upload] = {}
        self._dir: Path | None = None

    def _directory(self) -> Path:
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="scriptgen-emulator-files-"))
                weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
            return self._dir

    def _new_name(self) -> str:
        """An unused generated name; call with the lock held."""
        while True:
            name = f"files/{secrets.token_hex(6)}"
            if name not in self._files and all(u.name != name for u in self._uploads.values()):
                return name

    # -- uploads -------------------------------------------------------------------------------

    def start_upload(
        self, name: str | None, display_name: str, mime_type: str, declared_size: int | None
    ) -> str:
        """Open a resumable session for a file of `declared_size` bytes; returns its id."""
        if declared_size is not None and declared_size > self._max_bytes:
            raise ApiFailure(400, f"File size exceeds the limit: {self._max_bytes} bytes.")
        if name is not None and not _NAME.match(name):
            raise ApiFailure(
                400,
                f"Invalid file name {name!r}: use files/ and up to 40 lowercase letters, "
                "digits or dashes.",
            )
        directory = self._directory()
        upload_id = secrets.token_urlsafe(32)
        with self._lock:
            if name is None:
                name = self._new_name()
            elif name in self._files or any(u.name == name for u in self._uploads.values()):
                raise ApiFailure(409, f"A file named {name} already exists.")
            path = directory / upload_id
            path.touch()
            self._uploads[upload_id] = _Upload(
                name, display_name, mime_type or "application/octet-stream", declared_size, path
            )
        return upload_id

    def receive(
        self, upload_id: str, command: str, offset: int, length: int, read: Callable[[int], bytes]
    ) -> StoredFile | None:
        """Append one chunk of `length` bytes, taken from `read`; the file once finalized.

        `command` is the `X-Goog-Upload-Command` header: "upload", "upload, finalize" or
        "finalize". The chunk must start where the previous one ended (`offset`).
        """
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None:
            raise ApiFailure(404, "No upload session with this id (finished, or never started).")
        commands = {part.strip() for part in command.split(",") if part.strip()}
        if not commands or not commands <= _COMMANDS or (length and "upload" not in commands):
            raise ApiFailure(400, f"Unsupported X-Goog-Upload-Command {command!r}.")
        with upload.lock:
            if offset != upload.received:
                raise ApiFailure(
                    400, f"Upload offset {offset} does not match {upload.received} bytes received."
                )
            end = upload.received + length
            if end > self._max_bytes:
                raise ApiFailure(400, f"File size exceeds the limit: {self._max_bytes} bytes.")
            if upload.declared_size is not None and end > upload.declared_size:
                raise ApiFailure(
                    400, f"Upload exceeds the declared size of {upload.declared_size}."
                )
            self._append(upload, length, read)
            if "finalize" not in commands:
                return None
            if upload.declared_size is not None and upload.received != upload.declared_size:
                raise ApiFailure(
                    400,
                    f"Upload finalized after {upload.received} of {upload.declared_size} bytes.",
                )
            stored = StoredFile(
                upload.name,
                upload.display_name,
                upload.mime_type,
                upload.received,
                upload.sha256.hexdigest(),
                generated=False,
                created=self._clock(),
                path=upload.path,
            )
            with self._lock:
                del self._uploads[upload_id]
                self._files[stored.name] = stored
            return stored

    def _append(self, upload: _Upload, length: int, read: Callable[[int], bytes]) -> None:
        """Copy `length` bytes in pieces; a short read (the client hung up) leaves no trace."""
        sha256 = upload.sha256.copy()
        with upload.path.open("ab") as out:
            remaining = length
            while remaining > 0:
                piece = read(min(remaining, _PIECE_BYTES))
                if not piece:
                    out.truncate(upload.received)
                    raise ApiFailure(400, "The upload chunk ended before its Content-Length.")
                out.write(piece)
                sha256.update(piece)
                remaining -= len(piece)
        upload.sha256 = sha256
        upload.received += length

    # -- stored files --------------------------------------------------------------------------

    def create_generated(
        self, display_name: str, mime_type: str, chunks: Iterable[bytes]
    ) -> StoredFile:
        """Write a generated file (e.g. a batch's results) from `chunks`, in order."""
        directory = self._directory()
        with self._lock:
            name = self._new_name()
        path = directory / name.removeprefix("files/")
        sha256 = hashlib.sha256()
        size = 0
        with path.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
                sha256.update(chunk)
                size += len(chunk)
        stored = StoredFile(
            name,
            display_name,
            mime_type,
            size,
            sha256.hexdigest(),
            generated=True,
            created=self._clock(),
            path=path,
        )
        with self._lock:
            self._files[name] = stored
        return stored

    def get(self, name: str) -> StoredFile:
        with self._lock:
            stored = self._files.get(name)
        if stored is None:
            raise _missing(name)
        return stored

    def files(self) -> list[StoredFile]:
        """Every stored file, oldest first."""
        with self._lock:
            return list(self._files.values())

    def delete(self, name: str) -> None:
        with self._lock:
            stored = self._files.pop(name, None)
        if stored is None:
            raise _missing(name)
        # A reader that opened it first keeps reading (POSIX unlink semantics).
        stored.path.unlink(missing_ok=True)

    def open(self, name: str) -> tuple[StoredFile, BinaryIO]:
        """A stored file and an open binary handle on its contents (the caller closes it)."""
        stored = self.get(name)
        try:
            return stored, stored.path.open("rb")
        except FileNotFoundError:
            raise _missing(name) from None
