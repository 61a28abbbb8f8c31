"""`scriptgen run --out FILE`: results written as JSONL, CSV or Parquet, atomically; or a table.

Owns `output_path` (checked before anything is sent: a known suffix, an existing folder that
can be written),
`write_results` (a temporary file in the same folder, renamed over FILE only once complete, so
a failure or Ctrl-C never leaves half a file; FILE gets the mode a plain `open()` would give
it, and a FILE that is a symbolic link is written through, as `open()` would: its target is
replaced and the link kept) and `summary_table` (what `run` prints without `--out`). The rows are
`ResultList.to_dataframe()`'s: the input's fields (a CSV row, a JSONL line filled by
`--template`) as fields of their own, then the result's, `cached` and `metadata` among them.

Parquet is written by pandas with pyarrow, a dependency of the package for this: a Parquet
file is for reading back, and `pandas.read_parquet` needs pyarrow (or fastparquet) to read one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.errors import ConfigurationError
from ..results import ResultList, table_rows

if TYPE_CHECKING:
    import pandas as pd

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
PREVIEW = 48


def output_path(out: str) -> str:
    """`--out`: `-` (JSONL on stdout) or a file whose suffix says its format, in a real folder."""
    if out == "-":
        return out
    path = Path(out)
    if path.suffix.lower() not in FORMATS:
        raise ConfigurationError(
            f"--out {out}: unknown format {path.suffix or '(no suffix)'}; name the file "
            ".jsonl, .csv or .parquet (or pass - for JSONL on stdout)."
        )
    folder = path.parent
    if not folder.is_dir():
        raise ConfigurationError(f"--out {out}: {_missing_folder(folder)}")
    if not os.access(folder, os.W_OK | os.X_OK):  # the kernel's answer: right for root too
        raise ConfigurationError(
            f"--out {out}: the folder {folder} cannot be written; name a file in one that can."
        )
    if path.is_dir():
        raise ConfigurationError(f"--out {out} is a folder; name a file.")
    return out


def _missing_folder(folder: Path) -> str:
    """Why `folder` cannot hold the output: missing (create it), or under a file (none can)."""
    for ancestor in (folder, *folder.parents):
        if ancestor.exists() and not ancestor.is_dir():
            return f"{ancestor} is a file, not a folder; name a file in a folder."
    return f"the folder {folder} does not exist; create it."


def write_results(results: ResultList, out: str) -> None:
    """Write every result to `out` (see `output_path`); all of it or, on failure, nothing."""
    if out == "-":
        _write_jsonl(results, sys.stdout)
        sys.stdout.flush()
        return
    kind = FORMATS[Path(out).suffix.lower()]
    path = Path(os.path.realpath(out))  # through a symbolic link, as open() writes
    fd, temporary = _create_beside(path)
    mode = _mode_of_plain_open(path, fd)
    try:
        if kind == "parquet":
            with open(fd, "wb") as binary:
                _flat(results).to_parquet(binary, index=False)
        else:
            with open(fd, "w", encoding="utf-8", newline="") as stream:
                if kind == "jsonl":
                    _write_jsonl(results, stream)
                else:
                    _flat(results).to_csv(stream, index=False)
        os.chmod(temporary, mode)  # an existing file's own mode, which the new one lacks
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _create_beside(path: Path) -> tuple[int, str]:
    """A new empty file in `path`'s folder, for writing, created as `open()` creates files.

    Its mode is 0666 less the umask, where `tempfile.mkstemp` makes 0600 whatever the umask:
    renamed into place, that left results others were meant to read private to their writer.
    """
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(temporary)
        except FileExistsError:  # 48 random bits taken: draw again
            continue


def _mode_of_plain_open(path: Path, fd: int) -> int:
    """The mode `open(path, "w")` would leave: the file's own when it exists (truncating keeps
    it), else that of a new file (`fd`'s, created with the umask applied)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return stat.S_IMODE(os.fstat(fd).st_mode)


def _write_jsonl(results: ResultList, stream: Any) -> None:
    columns, rows = table_rows(results)
    for row in rows:
        ordered = {column: row[column] for column in columns}
        stream.write(json.dumps(ordered, ensure_ascii=False, default=str) + "\n")


def _flat(results: ResultList) -> pd.DataFrame:
    """The rows as a table: what nests (`data`, `metadata`, an input's list) as JSON text."""
    frame = results.to_dataframe()
    for column in frame.columns:
        if frame[column].dtype.kind == "O":  # objects (and text): where a nested value can be
            frame[column] = [_flat_value(value) for value in frame[column]]
    return frame


def _flat_value(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def summary_table(results: ResultList) -> pd.DataFrame:
    """One line per request: outcome, model, attempts, tokens, cost, and the text's start."""
    import pandas as pd

    lines = []
    for r in results:
        said = r.text if r.success else f"{r.error.kind}: {r.error.message}" if r.error else ""
        said = " ".join((said or "").split())
        lines.append(
            {
                "id": r.id,
                "ok": "yes" if r.success else "no",
                "model": r.model,
                "attempts": r.attempts,
                "tokens": r.usage.total,
                "cost": r.cost_usd,
                "text or error": said if len(said) <= PREVIEW else said[: PREVIEW - 1] + "…",
            }
        )
    return pd.DataFrame(lines)
