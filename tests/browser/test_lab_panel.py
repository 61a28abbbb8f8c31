"""The progress panel in a real browser: JupyterLab, headless Chromium, the notebooks run in full.

`test_quickstart_in_lab` runs the committed quickstart (Run All) and reads what the page shows:
each batch's panel with its final counts, bar, per-model rows and errors, the printed summary,
and the charts as images. `test_panel_moves_and_cancel_stops_a_batch` runs a notebook written
here: a batch slow enough (emulator latency, two in flight) to be seen mid-run, then a long
`--await` batch stopped with the panel's Cancel button. Every wait is on page state.

Set SCRIPTGEN_UPDATE_SCREENSHOT=1 (or run `make screenshot`) to copy the quickstart panel's
screenshot to docs/img/panel.png, the picture in the README.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
import pytest

from .conftest import INSTALL, Lab, PageProblems

expect = pytest.importorskip(
    "playwright.sync_api", reason=f"playwright is not installed: {INSTALL}"
).expect

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "notebooks" / "01_quickstart.ipynb"
README_SCREENSHOT = REPO / "docs" / "img" / "panel.png"
RUN_TIMEOUT_MS = 120_000

SUMMARY = re.compile(
    r"^(?P<done>\d+)/(?P<total>\d+) done · (?P<ok>\d+) ok · (?P<failed>\d+) failed · "
    r"(?P<not_run>\d+) not run · (?P<retries>\d+) retr(?:y|ies)$"
)
PRINTED = re.compile(
    r"^scriptgen batch (?P<batch>\w+) (?P<status>\w+): (?P<done>\d+)/(?P<total>\d+) done, "
    r"(?P<ok>\d+) ok, (?P<failed>\d+) failed, (?P<not_run>\d+) not run"
)


# --- reading the page ---------------------------------------------------------------------------


def open_notebook(page: Page, lab: Lab, name: str) -> None:
    page.goto(lab.notebook_url(name))
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    # The indicator reads idle before the kernel's websocket is up; Run All would then do nothing.
    page.wait_for_selector(".jp-StatusBar-TextItem:has-text('| Idle')")


def run_all(page: Page) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def cell(page: Page, index: int) -> Locator:
    """The notebook's cell `index` (markdown cells count), as in the .ipynb file."""
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def cell_indexes(notebook: Any) -> dict[str, int]:
    """Where the quickstart's cells that the test reads are (markdown cells count), found by
    their source, so that a cell added to the tutorial does not move what the test reads."""
    starts = {
        "scripts": "%%scriptgen batch -o scripts",
        "scripts table": 'scripts[["id"',
        "short table": 'short[["id"',
        "chapters table": 'chapter_scripts[["id"',
        "throughput": "%scriptgen chart throughput",
        "cost": "%scriptgen chart cost",
    }
    sources = [c.source for c in notebook.cells]
    found = {
        name: next(i for i, source in enumerate(sources) if source.startswith(start))
        for name, start in starts.items()
    }
    found["last"] = max(i for i, c in enumerate(notebook.cells) if c.cell_type == "code")
    return found


def wait_until_run(page: Page, index: int) -> None:
    """Wait until cell `index` has run: its prompt shows an execution count."""
    expect(cell(page, index).locator(".jp-InputPrompt")).to_have_text(
        re.compile(r"\[\d+\]"), timeout=RUN_TIMEOUT_MS
    )


def panel_text(panel: Locator, part: str) -> str:
    return panel.locator(f".{part} .widget-html-content").inner_text().strip()


def summary_counts(panel: Locator) -> dict[str, int]:
    text = panel_text(panel, "sg-summary")
    match = SUMMARY.match(text)
    assert match, f"unexpected panel summary {text!r}"
    return {k: int(v) for k, v in match.groupdict().items()}


def bar(panel: Locator) -> dict[str, Any]:
    """The bar's label ("3/5"), its filled width in percent and its style classes."""
    label = panel.locator(".sg-bar .widget-label").inner_text().strip()
    fill = panel.locator(".sg-bar .progress-bar")
    width = fill.evaluate("el => parseFloat(el.style.width)")
    return {"label": label, "width": width, "classes": fill.get_attribute("class") or ""}


def model_rows(panel: Locator) -> dict[str, dict[str, str]]:
    rows = {}
    for row in panel.locator("tr.sg-model").all():
        name, state, attempts, share = (c.strip() for c in row.locator("td").all_inner_texts())
        rows[name] = {"state": state, "attempts": attempts, "share": share}
    return rows


def printed_summary(cell_locator: Locator) -> dict[str, str]:
    out = cell_locator.locator(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']"
    )
    text = out.last.inner_text().strip().splitlines()[-1]
    match = PRINTED.match(text)
    assert match, f"unexpected printed summary {text!r}"
    return match.groupdict()


def frame_rows(cell_locator: Locator) -> list[dict[str, str]]:
    """A DataFrame output's rows as dicts of the shown text."""
    table = cell_locator.locator("table.dataframe")
    header = [h.strip() for h in table.locator("thead th").all_inner_texts()][1:]  # no index
    rows = []
    for tr in table.locator("tbody tr").all():
        values = [v.strip() for v in tr.locator("td").all_inner_texts()]
        rows.append(dict(zip(header, values, strict=True)))
    return rows


def wait_for_progress(page: Page, panel_index: int) -> dict[str, int]:
    """Wait until panel `panel_index` shows some but not all requests done; what it showed."""
    handle = page.wait_for_function(
        """(i) => {
            const panel = document.querySelectorAll('.sg-panel')[i];
            const label = panel && panel.querySelector('.sg-bar .widget-label');
            const m = label && label.textContent.trim().match(/^(\\d+)\\/(\\d+)$/);
            if (!m || +m[1] <= 0 || +m[1] >= +m[2]) return null;
            const fill = panel.querySelector('.sg-bar .progress-bar');
            return {done: +m[1], total: +m[2], width: parseFloat(fill.style.width)};
        }""",
        arg=panel_index,
        timeout=RUN_TIMEOUT_MS,
        polling="raf",
    )
    seen: dict[str, int] = handle.json_value()
    return seen


# --- the tests ----------------------------------------------------------------------------------


def test_quickstart_in_lab(lab: Lab, lab_page: tuple[Page, PageProblems], tmp_path: Path) -> None:
    page, _ = lab_page
    # Without its saved outputs, so nothing on the page predates this run.
    notebook = nbformat.read(QUICKSTART, as_version=4)
    for code in notebook.cells:
        if code.cell_type == "code":
            code.outputs, code.execution_count = [], None
    nbformat.write(notebook, lab.root / QUICKSTART.name)
    at = cell_indexes(notebook)
    open_notebook(page, lab, QUICKSTART.name)
    run_all(page)
    wait_until_run(page, at["last"])
    expect(page.locator(".jp-InputPrompt", has_text="[*]")).to_have_count(0)

    panels = page.locator(".sg-panel")
    expect(panels).to_have_count(5)  # scripts, the truncated, their retry, chapters, cached

    # The first batch: five scripts, all answered; the panel agrees with the results table.
    first = panels.nth(0)
    counts = summary_counts(first)
    assert counts == {"done": 5, "total": 5, "ok": 5, "failed": 0, "not_run": 0, "retries": 0}
    shown = bar(first)
    assert shown["label"] == "5/5"
    assert shown["width"] == 100
    assert "progress-bar-success" in shown["classes"]
    printed = printed_summary(cell(page, at["scripts"]))
    assert printed["status"] == "finished"
    assert (printed["done"], printed["total"], printed["ok"]) == ("5", "5", "5")
    assert panel_text(first, "sg-title") == f"scriptgen batch {printed['batch']} · finished"
    expect(first.locator(".sg-cancel")).to_be_disabled()
    expect(first.locator(".sg-cancel")).to_have_text("Cancel")

    scripts = frame_rows(cell(page, at["scripts table"]))
    assert len(scripts) == 5 and all(r["success"] == "True" for r in scripts)
    rows = model_rows(first)
    assert len(rows) > 1, "the panel lists the whole ladder"
    assert {r["state"] for r in rows.values()} == {"ready"}
    used = {r["model"] for r in scripts}
    for model in used:
        attempts = sum(r["model"] == model for r in scripts)
        assert rows[model]["attempts"] == str(attempts)
        assert rows[model]["share"] == f"{attempts / 5:.0%}"
    assert all(rows[m]["attempts"] == "0" for m in rows.keys() - used)
    tokens_in = sum(int(r["input_tokens"]) for r in scripts)
    assert panel_text(first, "sg-usage").startswith(f"{tokens_in:,} tokens in · ")

    output = cell(page, at["scripts"]).locator(".jp-Cell-outputWrapper")
    output.screenshot(path=str(tmp_path / "panel.png"))
    if os.environ.get("SCRIPTGEN_UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "panel.png", README_SCREENSHOT)

    # The second batch: both answers cut short, listed as errors, the bar in the warning color.
    second = panels.nth(1)
    assert summary_counts(second) == {
        "done": 2,
        "total": 2,
        "ok": 0,
        "failed": 2,
        "not_run": 0,
        "retries": 0,
    }
    assert "progress-bar-warning" in bar(second)["classes"]
    errors = second.locator("li.sg-error")
    expect(errors).to_have_count(2)
    for text in errors.all_inner_texts():
        assert "truncated" in text
    assert {r["error_kind"] for r in frame_rows(cell(page, at["short table"]))} == {"truncated"}

    # The third, their retry with room; the fourth: a template over three chapters.
    assert summary_counts(panels.nth(2))["ok"] == 2
    third = panels.nth(3)
    assert summary_counts(third)["ok"] == 3
    assert bar(third)["label"] == "3/3"
    chapters = frame_rows(cell(page, at["chapters table"]))
    for model in {r["model"] for r in chapters}:
        attempts = sum(r["model"] == model for r in chapters)
        assert model_rows(third)[model]["attempts"] == str(attempts)

    # The charts are images, not a figure's repr.
    for index in (at["throughput"], at["cost"]):
        image = cell(page, index).locator(".jp-OutputArea-output img")
        expect(image).to_have_count(1)
        size = image.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
        assert size[0] and size[1] > 0 and size[2] > 0, f"chart in cell {index}: {size}"
    page.screenshot(path=str(tmp_path / "quickstart.png"), full_page=True)


LIVE_SETUP = """\
import os
import tempfile

os.environ["SCRIPTGEN_DB"] = os.path.join(tempfile.mkdtemp(), "browser.duckdb")
%load_ext scriptgen_nb
%scriptgen emulator start --minute-s 60 --latency-scale 0.4
"""
MODEL = "gemini-2.0-flash-lite"  # 30 requests a "minute": the steady batch is never paced
STEADY = 12
LONG = 120


def live_notebook() -> nbformat.NotebookNode:
    steady = "\n".join(f"A short poem about the number {i}." for i in range(STEADY))
    long = "\n".join(f"A long story about the number {i}." for i in range(LONG))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell(LIVE_SETUP),
        nbformat.v4.new_code_cell(
            f"%%scriptgen batch -o steady --model {MODEL} --concurrency 2\n{steady}"
        ),
        nbformat.v4.new_code_cell(
            f"%%scriptgen batch -o stopped --model {MODEL} --concurrency 2 --await\n{long}"
        ),
        nbformat.v4.new_code_cell(
            'print("after cancel:", int(stopped.success.sum()), "ok,",\n'
            '      int((stopped.error_kind == "not_run").sum()), "not run of", len(stopped))'
        ),
    ]
    return nb


def test_panel_moves_and_cancel_stops_a_batch(
    lab: Lab, lab_page: tuple[Page, PageProblems], tmp_path: Path
) -> None:
    page, _ = lab_page
    nbformat.write(live_notebook(), lab.root / "live_panel.ipynb")
    open_notebook(page, lab, "live_panel.ipynb")
    run_all(page)

    # The steady batch, seen mid-run and then done.
    panels = page.locator(".sg-panel")
    mid = wait_for_progress(page, 0)
    assert mid["total"] == STEADY and 0 < mid["done"] < STEADY
    assert 0 < mid["width"] < 100
    steady = panels.nth(0)
    steady.screenshot(path=str(tmp_path / "mid-run.png"))
    expect(steady.locator(".sg-summary")).to_contain_text(f"{STEADY}/{STEADY} done", timeout=60_000)
    assert summary_counts(steady)["ok"] == STEADY
    assert bar(steady) == {
        "label": f"{STEADY}/{STEADY}",
        "width": 100,
        "classes": bar(steady)["classes"],
    }
    assert model_rows(steady) == {
        MODEL: {"state": "ready", "attempts": str(STEADY), "share": "100%"}
    }

    # The long batch, run with --await: Cancel stops it mid-run.
    at_click = wait_for_progress(page, 1)
    long = panels.nth(1)
    cancel = long.locator(".sg-cancel")
    expect(cancel).to_be_enabled()
    cancel.click()
    wait_until_run(page, 2)
    expect(long.locator(".sg-title")).to_contain_text("· cancelled")
    expect(cancel).to_have_text("Cancelled")
    expect(cancel).to_be_disabled()
    counts = summary_counts(long)
    answered = counts["ok"] + counts["failed"]
    assert counts["total"] == LONG
    assert at_click["done"] <= answered < LONG // 2, counts
    assert counts["not_run"] == LONG - answered
    stopped = bar(long)
    assert stopped["label"] == f"{answered}/{LONG}"  # the bar stops where the batch did
    assert stopped["width"] == pytest.approx(100 * answered / LONG, abs=0.5)
    assert "progress-bar-warning" in stopped["classes"]
    long.screenshot(path=str(tmp_path / "cancelled.png"))

    # The cell ended, and the notebook went on with the results it kept.
    wait_until_run(page, 3)
    printed = cell(page, 3).locator(".jp-OutputArea-output").inner_text().strip()
    assert printed == f"after cancel: {counts['ok']} ok, {counts['not_run']} not run of {LONG}"
