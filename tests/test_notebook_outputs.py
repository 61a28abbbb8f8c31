"""What a notebook keeps once executed without widget state: the outputs nbconvert saves.

A small notebook runs in a real kernel (nbclient, as `jupyter nbconvert --execute` runs it) on
the local emulator. Its saved outputs are what GitHub, VS Code and nbviewer show when they
cannot draw the widgets: each batch's panel must read as the batch ended (not "0/N done" from
the moment it was displayed), and charts, from the magic and from the Python functions alike,
must be saved as PNG images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
WIDGET = "application/vnd.jupyter.widget-view+json"


def run_notebook(folder: Path, *cells: str) -> list[list[dict[str, Any]]]:
    """Execute `cells` in a fresh kernel from `folder`, as nbconvert would without widget
    state; each cell's saved outputs."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(
        notebook,
        timeout=90,
        kernel_name="python3",
        store_widget_state=False,
        resources={"metadata": {"path": str(folder)}},
    )
    keyless = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    # This checkout's package in the kernel, whatever is installed; a keyless user's kernel.
    client.execute(env={**keyless, "PYTHONPATH": str(REPO), "SCRIPTGEN_DB": "nb.duckdb"})
    return [cell.outputs for cell in notebook.cells]


def texts(outputs: list[dict[str, Any]]) -> list[str]:
    """The text each output shows where widgets and images are not drawn."""
    return [o.get("text") or o.get("data", {}).get("text/plain", "") for o in outputs]


def panel(outputs: list[dict[str, Any]]) -> str:
    """The saved text of the cell's one progress panel (the output carrying a widget)."""
    (shown,) = [o for o in outputs if WIDGET in o.get("data", {})]
    text: str = shown["data"]["text/plain"]
    return text


def test_saved_panels_show_how_each_batch_ended_and_charts_are_images(tmp_path: Path) -> None:
    cells = run_notebook(
        tmp_path,
        "%load_ext scriptgen_nb",
        "%%scriptgen batch -o scripts\nA haiku about tides.\nA haiku about moss.",
        "%%scriptgen batch -o short --max-tokens 5\nA long story about lighthouses.",
        # The Python function first: the magic's own way to show figures must not be needed.
        "import scriptgen_nb as sg\n"
        "from scriptgen_nb.jupyter.charts import chart\n"
        'chart("cost", sg.CallStore())',
        "%scriptgen chart throughput",
    )
    _, finished, truncated, python_chart, magic_chart = cells

    ended = panel(finished)
    assert ended.startswith("scriptgen batch: 2/2 done · 2 ok · 0 failed"), ended
    assert ended.endswith(" · finished"), ended
    assert any(" finished: 2/2 done, 2 ok" in text for text in texts(finished))  # the summary
    ended = panel(truncated)
    assert ended.startswith("scriptgen batch: 1/1 done · 0 ok · 1 failed"), ended
    assert not any("0/2 done" in t or "0/1 done" in t for t in texts(finished + truncated))

    for chart_outputs in (magic_chart, python_chart):
        (figure,) = chart_outputs
        assert "image/png" in figure["data"], figure["data"].keys()
