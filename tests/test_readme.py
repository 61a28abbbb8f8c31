"""The README tells the truth: its notebook example runs as written, in a real IPython shell on
the session's local emulator, and its tables list every option of the magics."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scriptgen_nb.emulator import EmulatorConfig
from scriptgen_nb.jupyter.endpoint import SESSION
from scriptgen_nb.jupyter.magic import BATCH, LINES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of README's `## title` section, up to the next `## ` heading."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


@pytest.fixture
def session_emulator(monkeypatch: pytest.MonkeyPatch, call_log_in_tmp: Path) -> Iterator[Any]:
    """No key set: the magics use the session's emulator (every catalogue model, no latency)."""
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    emulator = SESSION.start(EmulatorConfig(api_keys=(), latency_scale=0.0, minute_s=2.0))
    SESSION.announced = True
    yield emulator
    SESSION.stop()


def test_the_notebook_example_runs_as_written(shell: Any, session_emulator: Any) -> None:
    blocks = code_blocks(section("In Jupyter"))[:3]
    assert blocks[1].startswith("%%scriptgen batch"), "the example's second cell is the batch"
    shell.user_ns.pop("scripts", None)
    for block in blocks:
        outcome = shell.run_cell(block)
        assert outcome.error_before_exec is None and outcome.error_in_exec is None, block
    scripts = shell.user_ns["scripts"]
    assert scripts["topic"].tolist() == ["the tides", "moss", "lighthouses"]
    assert list(scripts.columns[:3]) == ["topic", "audience", "id"]
    assert scripts["success"].all()
    assert session_emulator.counters()["prompts"] == {"distinct": 3, "requests": 3}


def test_the_option_tables_name_every_option_of_the_magics() -> None:
    text = section("In Jupyter")
    batch_rows = [row for row in text.splitlines() if row.startswith("| `-")]
    batch_table = "\n".join(batch_rows)
    for action in BATCH._actions:
        for option in action.option_strings:
            assert f"`{option}" in batch_table, option
    line_rows = [row for row in text.splitlines() if row.startswith("| `%scriptgen")]
    batch_options = {option for action in BATCH._actions for option in action.option_strings}
    for command, parser in LINES.items():
        rows = [row for row in line_rows if row.startswith(f"| `%scriptgen {command}")]
        assert len(rows) == 1, command
        [row] = rows  # each command's options in its own row (`--all` is limits' and chart's)
        for action in parser._actions:
            options = set(action.option_strings)
            if not options or "--db" in options:  # --db: said once under the table
                continue
            if command == "retry" and options <= batch_options and "-o" not in options:
                continue  # retry's settings are the batch options of the first table
            assert any(option in row for option in options), f"{command} {options}"
    assert "[settings]` | re-run a batch's failures (below); the settings are the batch" in text
    assert "Every one takes `--db PATH`" in text
