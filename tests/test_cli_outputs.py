"""`scriptgen run --out`'s writer: whole files only, with the mode a plain `open()` gives, and
the input's fields as fields of their own."""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from scriptgen_nb.cli.outputs import write_results
from scriptgen_nb.engine.values import Failure, Result
from scriptgen_nb.results import ResultList

RESULTS = ResultList([Result("a", 0, True, text="first"), Result("b", 1, True, text="second")])


@pytest.fixture
def umask() -> Iterator[None]:
    """Run the test under umask 027 (a group may read, others nothing), then restore it."""
    before = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("name", ["r.jsonl", "r.csv", "r.parquet"])
def test_a_new_output_file_gets_the_umasks_mode_and_an_existing_one_keeps_its_own(
    tmp_path: Path, name: str
) -> None:
    new = tmp_path / name
    write_results(RESULTS, str(new))
    assert mode(new) == 0o640  # 0666 less the umask, as open() makes it (mkstemp made 0600)

    again = tmp_path / f"again-{name}"
    again.write_bytes(b"")
    again.chmod(0o664)
    write_results(RESULTS, str(again))
    assert mode(again) == 0o664 and again.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, again.name])  # no .part


def test_a_parquet_output_reads_back_with_pandas(tmp_path: Path) -> None:
    # pandas needs pyarrow (a dependency) for Parquet; without it read_parquet raised
    # "Unable to find a usable engine" in the project's own install.
    import pandas as pd

    out = tmp_path / "r.parquet"
    results = ResultList(
        [
            Result("a", 0, True, text="first", data={"title": "Tides"}, metadata={"chapter": 1}),
            Result("b", 1, False, error=Failure("blocked", "safety")),
        ]
    )
    write_results(results, str(out))
    frame = pd.read_parquet(out)
    assert frame["id"].tolist() == ["a", "b"]
    assert frame["success"].tolist() == [True, False]
    assert frame["text"].iloc[0] == "first" and frame["error_kind"].iloc[1] == "blocked"
    assert frame["text"].isna().tolist() == [False, True]
    assert json.loads(frame["data"].iloc[0]) == {"title": "Tides"}
    assert json.loads(frame["metadata"].iloc[0]) == {"chapter": 1}


def test_every_format_carries_the_input_fields_as_fields(tmp_path: Path) -> None:
    """A CSV row (or a JSONL line filled by --template) comes back as fields beside the
    result's, not as one JSON string; a field named like a result's is kept as input_<name>."""
    rows = [{"id": "c1", "topic": "tides", "audience": "children"}, {"id": "c2", "topic": "moss"}]
    results = ResultList(
        Result(
            f"c{i + 1}",
            i,
            True,
            text="an answer",
            data={"title": "T"},
            metadata={"row": row, "template_hash": "h"},
        )
        for i, row in enumerate(rows)
    )
    for name in ("r.jsonl", "r.csv", "r.parquet"):
        write_results(results, str(tmp_path / name))
    with (tmp_path / "r.csv").open(newline="") as f:
        from_csv: list[dict[str, Any]] = list(csv.DictReader(f))
    from_jsonl = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    with duckdb.connect() as con:
        from_parquet = con.execute(
            "SELECT * FROM read_parquet(?)", [str(tmp_path / "r.parquet")]
        ).df()
    for written in (from_csv, from_jsonl, from_parquet.to_dict("records")):
        assert list(written[0])[:4] == ["input_id", "topic", "audience", "id"]
        assert [(w["topic"], w["id"]) for w in written] == [("tides", "c1"), ("moss", "c2")]
        assert written[0]["audience"] == "children"
        assert written[1]["audience"] == "" or pd.isna(written[1]["audience"])  # CSV: empty
    assert from_jsonl[0]["metadata"] == {"template_hash": "h"}
    assert from_jsonl[0]["data"] == {"title": "T"} and json.loads(from_csv[0]["data"]) == {
        "title": "T"
    }
    assert json.loads(from_parquet["metadata"][0]) == {"template_hash": "h"}


@pytest.mark.parametrize("name", ["r.jsonl", "r.csv", "r.parquet"])
def test_an_output_that_is_a_symbolic_link_is_written_through_and_stays_a_link(
    tmp_path: Path, name: str
) -> None:
    """Before: `--out link` replaced the link with a regular file and its target kept its old
    content. Now it writes through the link, as `open()` would: the target is replaced
    (atomically, keeping its mode) and the link stays; a dangling link gets its target made."""
    shared = tmp_path / "shared"
    shared.mkdir()
    target = shared / f"real-{name}"
    target.write_bytes(b"old\n")
    target.chmod(0o604)
    link = tmp_path / name
    link.symlink_to(target)
    write_results(RESULTS, str(link))
    assert link.is_symlink() and link.resolve() == target
    assert target.read_bytes() != b"old\n" and mode(target) == 0o604
    readers = {".jsonl": pd.read_json, ".csv": pd.read_csv, ".parquet": pd.read_parquet}
    read = readers[link.suffix]
    frame = read(target, lines=True) if link.suffix == ".jsonl" else read(target)
    assert frame["id"].tolist() == ["a", "b"]
    dangling = tmp_path / f"new-{name}"
    dangling.symlink_to(shared / f"made-{name}")
    write_results(RESULTS, str(dangling))
    assert dangling.is_symlink() and (shared / f"made-{name}").stat().st_size > 0
    leftovers = [p.name for p in [*tmp_path.iterdir(), *shared.iterdir()] if ".part" in p.name]
    assert leftovers == []
