"""`scriptgen run --out`'s writer: whole files only, with the mode a plain `open()` gives."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

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
            Result("a", 0, True, text="first", data={"title": "Tides"}, metadata={"row": 1}),
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
    assert json.loads(frame["metadata"].iloc[0]) == {"row": 1}
