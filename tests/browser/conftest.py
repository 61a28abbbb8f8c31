"""Fixtures for the browser tests: a JupyterLab server and a headless Chromium driven by Playwright.

The server runs on 127.0.0.1 on a free port, with no token, over a temporary root folder that the
tests fill with notebooks; its config, data, settings, workspaces and runtime folders are temporary
too, so neither the user's Lab set-up nor a saved workspace leaks in (the announcements toast is
disabled there, notebook windowing is off so every cell stays in the page). The browser is
Debian's Chromium (`/usr/bin/chromium`, installed by `make test-browser`) driven by pip's
playwright through `executable_path`: nothing is downloaded (notes/jupyter.md §7.3).

Every page records console errors and page errors; `lab_page` fails the test on any, and on a
widget that could not be shown ("Error displaying widget"). Screenshots go to the test's
`tmp_path`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, ConsoleMessage, Page

CHROMIUM = Path(os.environ.get("SCRIPTGEN_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LAB_START_TIMEOUT_S = 60.0

INSTALL = "`make test-browser` installs it (the [browser] extra, and chromium with apt-get)"


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The Chromium binary; the browser tests skip, saying why, where there is none."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: `make test-browser` installs Debian's chromium with "
            "apt-get (as root); set SCRIPTGEN_CHROMIUM to use another binary"
        )
    return CHROMIUM


@dataclass
class Lab:
    """A running JupyterLab: its URL and the folder it serves."""

    url: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?reset"  # ?reset: no restored workspace

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, chromium: Path) -> Iterator[Lab]:
    pytest.importorskip("jupyterlab", reason=f"jupyterlab is not installed: {INSTALL}")
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    config = base / "config"
    # The announcements extension shows a news toast over the notebook; disable it.
    _write_json(
        config / "labconfig" / "page_config.json",
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}},
    )
    settings = base / "settings"
    # Lab 4 windows long notebooks (cells far off screen leave the DOM); keep them all.
    _write_json(
        settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
        {"windowingMode": "none"},
    )
    env = {
        k: v
        for k, v in os.environ.items()
        # Never Google: the notebooks start their own emulator, and no key reaches the kernel.
        if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")
    }
    env.update(
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTER_DATA_DIR=str(base / "data"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        IPYTHONDIR=str(base / "ipython"),
        SCRIPTGEN_DB=str(base / "scriptgen.duckdb"),
        PYTHONUNBUFFERED="1",
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = base / "lab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--port-retries=0",
                "--IdentityProvider.token=",
                "--ServerApp.password=",
                f"--ServerApp.root_dir={root}",
                "--allow-root",
                "--LabApp.check_for_updates_class="
                "jupyterlab.handlers.announcements.NeverCheckForUpdate",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
    lab = Lab(url, root, log, process)
    try:
        _wait_until_up(lab)
        yield lab
    finally:
        process.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(lab: Lab) -> None:
    deadline = time.monotonic() + LAB_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {lab.process.returncode}:\n{lab.log_tail()}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)  # polling a server that is starting; not a wait on page state
    pytest.fail(f"JupyterLab did not answer within {LAB_START_TIMEOUT_S:g}s:\n{lab.log_tail()}")


@pytest.fixture(scope="session")
def browser_context(
    tmp_path_factory: pytest.TempPathFactory, chromium: Path
) -> Iterator[BrowserContext]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason=f"playwright is not installed: {INSTALL}"
    )
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh user-data-dir
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1500, "height": 1000},
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


@dataclass
class PageProblems:
    """What went wrong in the page: console errors and uncaught exceptions."""

    console: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return [*self.console, *self.exceptions]


@pytest.fixture
def lab_page(
    browser_context: BrowserContext, tmp_path: Path
) -> Iterator[tuple[Page, PageProblems]]:
    page = browser_context.new_page()
    problems = PageProblems()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.console.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.exceptions.append(str(error)))
    try:
        yield page, problems
        widget_errors = page.get_by_text("Error displaying widget").count()
        assert widget_errors == 0, f"{widget_errors} widget(s) failed to display"
        assert not problems.all(), f"errors in the page: {problems.all()}"
    finally:
        try:
            page.screenshot(path=str(tmp_path / "page-at-end.png"), full_page=True)
        finally:
            _shut_down_kernel(page)
            page.close()


def _shut_down_kernel(page: Page) -> None:
    """Shut the notebook's kernel down, so the next test's kernel has both CPUs."""
    from playwright.sync_api import Error

    with contextlib.suppress(Error):
        page.evaluate(
            """async () => {
                const xsrf = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || '';
                const r = await fetch('/api/sessions');
                for (const s of await r.json()) {
                    await fetch('/api/sessions/' + s.id,
                                {method: 'DELETE', headers: {'X-XSRFToken': xsrf}});
                }
            }"""
        )
