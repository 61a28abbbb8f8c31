"""The progress core: counters from scripted events on a fake clock, text, the chooser, the bar."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import types
from typing import Literal

import pytest

import scriptgen_nb as sg
from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.engine.values import (
    Attempt,
    AttemptFinished,
    BatchFinished,
    BatchStarted,
    Failure,
    FailureKind,
    LimitLearned,
    LimitSource,
    ModelState,
    ModelStateChanged,
    QuotaShared,
    RequestFinished,
    Result,
    Usage,
)
from scriptgen_nb.progress import (
    ErrorRow,
    ModelRow,
    ProgressSnapshot,
    ProgressState,
    TextProgress,
    choose_progress,
    format_duration,
    format_learned,
    format_line,
    format_summary,
)

FAST = [sg.ModelSpec("fake-model", priority=1, input_usd_per_1m=1.0, output_usd_per_1m=2.0)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def started(total: int | None = 10, models: tuple[str, ...] = ("m1", "m2")) -> BatchStarted:
    return BatchStarted("b1", total, models, "auto", 4, 1_700_000_000.0)


def tried(model: str, *, will_retry: bool = False, request_id: str = "r") -> AttemptFinished:
    failure = Failure("server_error", "503") if will_retry else None
    attempt = Attempt(
        request_id, 0, 1, model, failure is None, failure, Usage(), 0.0, 10.0, 0.0, 0.0
    )
    return AttemptFinished(attempt, will_retry)


def finished(
    request_id: str,
    *,
    model: str | None = "m1",
    kind: FailureKind | None = None,
    message: str = "",
    usage: Usage | None = None,
    cost: float = 0.0,
    cached: bool = False,
    done: int = 0,
) -> RequestFinished:
    error = Failure(kind, message) if kind else None
    result = Result(
        request_id,
        0,
        error is None,
        error=error,
        model=model,
        usage=usage or Usage(),
        cost_usd=cost,
        cached=cached,
    )
    return RequestFinished(result, done, None)


def state_change(model: str, state: ModelState, until_s: float | None) -> ModelStateChanged:
    return ModelStateChanged(model, state, until_s, f"{state} for a reason")


def ended(
    status: Literal["finished", "cancelled", "failed"] = "finished", total: int = 5
) -> BatchFinished:
    return BatchFinished("b1", status, total, 0, 0, 0, Usage(), 0.0, 0.0, ())


def scripted() -> tuple[ProgressState, FakeClock]:
    """Ten requests on two models, five of them finished by t=4: every kind of ending."""
    clock = FakeClock()
    state = ProgressState(clock)
    state(started())
    clock.now = 1.0
    state(tried("m1"))
    state(finished("r0", usage=Usage(100, 50, 10), cost=0.01))
    state(tried("m1", will_retry=True))
    clock.now = 2.0
    state(state_change("m1", "parked", 5.0))
    state(tried("m2"))
    state(finished("r1", model="m2", usage=Usage(200, 100), cost=0.02))
    state(finished("r2", model="m2", kind="invalid_request", message="bad prompt\nsee details"))
    state(finished("r3", model=None, kind="not_run", message="cancelled before it was sent"))
    state(finished("r4", cached=True))
    clock.now = 4.0
    return state, clock


def test_snapshot_counts_every_ending() -> None:
    state, _ = scripted()
    s = state.snapshot()
    assert (s.batch_id, s.status, s.total, s.done) == ("b1", "running", 10, 5)
    assert (s.succeeded, s.failed, s.not_run, s.cached) == (3, 1, 1, 1)
    assert (s.retries, s.attempts) == (1, 3)
    assert s.usage == Usage(300, 150, 10)
    assert s.cost.usd == pytest.approx(0.03) and not s.cost.unpriced
    assert s.elapsed_s == 4.0
    # Answered requests only (r0, r1, r2): the cached and the never-sent one took no time.
    assert s.requests_per_min == 3 / 4.0 * 60
    # Five left at the recent pace of 3 answers in 4 s.
    assert s.eta_s == pytest.approx(5 / (3 / 4.0))
    assert s.errors == (ErrorRow("r2", "m2", "invalid_request", "bad prompt"),)


def test_model_rows_count_down_and_free_themselves() -> None:
    state, clock = scripted()
    assert state.snapshot().models == (
        ModelRow("m1", "parked", 3.0, "parked for a reason", 2, 2 / 3),
        ModelRow("m2", "ready", None, "", 1, 1 / 3),
    )
    clock.now = 6.5
    assert state.snapshot().models[0].seconds_left == 0.5
    clock.now = 7.0  # parked at t=2 for 5 s: usable again, though no event says so
    assert state.snapshot().models[0] == ModelRow("m1", "ready", None, "", 2, 2 / 3)

    state(state_change("m2", "exhausted", None))  # no known reset: stays exhausted
    state(state_change("m1", "cooling", 2.0))
    state(state_change("m3", "parked", 1.0))  # a pinned model outside the ladder shows up
    clock.now = 1_000.0
    rows = {row.name: (row.state, row.seconds_left) for row in state.snapshot().models}
    assert rows == {"m1": ("ready", None), "m2": ("exhausted", None), "m3": ("ready", None)}
    state(state_change("m2", "ready", None))
    assert state.snapshot().models[1].state == "ready"


def test_eta_follows_the_recent_pace_and_ends_with_the_batch() -> None:
    clock = FakeClock()
    state = ProgressState(clock, total=4)
    assert state.snapshot().status == "waiting" and state.snapshot().total == 4
    state(started(total=4))
    assert state.snapshot().eta_s is None  # nothing answered yet
    clock.now = 2.0
    state(finished("r0"))
    assert state.snapshot().eta_s == 3 / (1 / 2.0)
    clock.now = 40.0  # the only answer is older than the 30 s window: pace unknown
    assert state.snapshot().eta_s is None
    for i in range(1, 4):
        state(finished(f"r{i}"))
    assert state.snapshot().eta_s == 0.0
    clock.now = 41.0
    state(ended(total=4))
    clock.now = 99.0
    s = state.snapshot()
    assert (s.status, s.eta_s, s.elapsed_s) == ("finished", None, 41.0)
    assert s.requests_per_min == 4 / 41.0 * 60


def test_unknown_total_is_learned_at_the_end() -> None:
    clock = FakeClock()
    state = ProgressState(clock)
    state(started(total=None))
    clock.now = 1.0
    state(finished("r0"))
    s = state.snapshot()
    assert (s.total, s.eta_s) == (None, None)
    assert format_line(s).startswith("scriptgen batch: 1 done · 1 ok")
    state(ended("cancelled", total=1))
    assert state.snapshot().total == 1
    assert state.snapshot().status == "cancelled"


def test_errors_keep_the_latest_five_first_lines() -> None:
    state = ProgressState(FakeClock())
    state(started())
    for i in range(7):
        state(finished(f"r{i}", kind="server_error", message=f"  503 number {i}\ntrace"))
    state(finished("long", kind="timeout", message="x" * 500))
    errors = state.snapshot().errors
    assert [e.request_id for e in errors] == ["r3", "r4", "r5", "r6", "long"]
    assert errors[0].message == "503 number 3"
    assert len(errors[-1].message) == 160 and errors[-1].message.endswith("…")


def test_format_line_and_summary() -> None:
    state, clock = scripted()
    assert format_line(state.snapshot()) == (
        "scriptgen batch: 5/10 done · 3 ok · 1 cached · 1 failed · 1 not run · 1 retry"
        " · 45 req/min · $0.0300 · ETA 7s"
    )
    clock.now = 10.04
    state(ended(total=5))
    s = state.snapshot()
    assert format_summary(s) == (
        "scriptgen batch b1 finished: 5/5 done, 3 ok, 1 cached, 1 failed, 1 not run, 1 retry,"
        " 460 tokens, $0.0300 in 10.0s"
    )
    assert format_line(s).endswith(" · 18 req/min · $0.0300 · finished")


def test_format_line_before_the_start() -> None:
    snapshot = ProgressState(FakeClock(), total=40).snapshot()
    assert format_line(snapshot) == (
        "scriptgen batch: 0/40 done · 0 ok · 0 failed · 0 not run · 0 retries · $0.0000"
    )


@pytest.mark.parametrize(
    ("seconds", "tenths", "text"),
    [
        (7.44, True, "7.4s"),
        (3.2, False, "4s"),
        (0.0, False, "0s"),
        (125.4, True, "2m05s"),
        (3725.0, False, "1h02m05s"),
    ],
)
def test_format_duration(seconds: float, tenths: bool, text: str) -> None:
    assert format_duration(seconds, tenths=tenths) == text


def feed_fast(
    progress: TextProgress | ProgressState, clock: FakeClock, n: int, span: float
) -> None:
    """`n` completions spread evenly over `span` fake seconds."""
    for i in range(n):
        clock.now = span * (i + 1) / n
        progress(finished(f"r{i}"))


def test_text_progress_draws_at_most_ten_times_a_second_and_always_the_summary() -> None:
    clock = FakeClock()
    out = io.StringIO()
    bar = TextProgress(out, total=1000, clock=clock, refresh_s=None)
    bar(started(total=1000))
    feed_fast(bar, clock, 1000, 0.5)
    lines = out.getvalue().split("\r")[1:]
    assert 5 <= len(lines) <= 6  # t = 0, 0.1, 0.2, ... 0.5
    assert lines[0].startswith("scriptgen batch: 0/1000 done")
    bar(ended(total=1000))
    bar(finished("late"))  # nothing is drawn after the summary
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("scriptgen batch b1 finished: 1000/1000 done, 1000 ok")
    assert last.endswith("in 0.5s\n")
    bar.close()


def test_text_progress_blanks_the_rest_of_a_longer_line() -> None:
    long = scripted()[0].snapshot()
    short = ProgressState(FakeClock()).snapshot()
    out = io.StringIO()
    bar = TextProgress(out, refresh_s=None)
    bar.draw(long, final=False)
    bar.draw(short, final=False)
    assert out.getvalue() == (
        f"\r{format_line(long)}\r{format_line(short).ljust(len(format_line(long)))}"
    )


class Signalling(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.wrote = threading.Event()

    def write(self, text: str) -> int:
        self.wrote.set()
        return super().write(text)


def test_ticker_redraws_while_no_event_comes() -> None:
    clock = FakeClock()
    out = Signalling()
    bar = TextProgress(out, clock=clock, refresh_s=0.01)
    bar(started())
    out.wrote.clear()
    clock.now = 1.0  # past the throttle; no event follows, the ticker must draw
    assert out.wrote.wait(timeout=5)
    bar(ended())
    bar.close()
    assert bar._ticker is not None and not bar._ticker.is_alive()


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def fake_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `auto` believe it runs in a Jupyter kernel, as tqdm.autonotebook would."""

    class ZMQInteractiveShell:
        @classmethod
        def initialized(cls) -> bool:
            return True

    module = types.ModuleType("ipykernel.zmqshell")
    module.ZMQInteractiveShell = ZMQInteractiveShell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", module)


def test_choose_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_progress(None) is None
    assert isinstance(choose_progress("text"), TextProgress)
    with pytest.raises(sg.ConfigurationError, match=r"'auto'.*'widget'.*'text'.*None"):
        choose_progress("bar")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert choose_progress("auto") is None  # no kernel, no terminal: nothing to draw on
    monkeypatch.setattr(sys, "stderr", Tty())
    bar = choose_progress("auto", total=3)
    assert isinstance(bar, TextProgress) and bar.stream is sys.stderr
    assert bar.state.snapshot().total == 3


def test_without_ipywidgets_widget_is_an_error_and_auto_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # makes `import ipywidgets` fail
    monkeypatch.delitem(sys.modules, "scriptgen_nb.jupyter.panel", raising=False)
    with pytest.raises(sg.ConfigurationError, match="needs ipywidgets"):
        choose_progress("widget")
    fake_kernel(monkeypatch)
    monkeypatch.setattr(sys, "stderr", Tty())
    assert isinstance(choose_progress("auto"), TextProgress)


def test_batch_generate_with_a_text_bar(capsys: pytest.CaptureFixture[str]) -> None:
    reqs = sg.create_batch_requests(["one", "two", "three"])
    results = sg.batch_generate(reqs, models=FAST, backend=FakeBackend(), db=False, progress="text")
    assert [r.success for r in results] == [True, True, True]
    err = capsys.readouterr().err
    assert err.startswith("\rscriptgen batch: 0/3 done")
    assert " finished: 3/3 done, 3 ok, 0 failed, 0 not run, 0 retries, " in err
    assert err.endswith("s\n")


def test_progress_is_off_by_default_and_checked_before_any_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reqs = sg.create_batch_requests(["one"])
    sg.batch_generate(reqs, models=FAST, backend=FakeBackend(), db=False)
    assert capsys.readouterr() == ("", "")
    backend = FakeBackend()
    with pytest.raises(sg.ConfigurationError, match="progress='fancy'"):
        sg.batch_generate(reqs, models=FAST, backend=backend, db=False, progress="fancy")
    assert backend.calls == []


def test_progress_imports_no_frontend_library() -> None:
    code = (
        "import sys, scriptgen_nb.progress, scriptgen_nb.api;"
        "print(sorted({'IPython', 'ipywidgets', 'ipykernel'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_snapshot_is_a_frozen_value() -> None:
    snapshot = ProgressState(FakeClock()).snapshot()
    assert isinstance(snapshot, ProgressSnapshot)
    with pytest.raises(AttributeError):
        snapshot.done = 3  # type: ignore[misc]


def test_a_learned_limit_shows_in_the_row_the_line_and_the_summary() -> None:
    clock = FakeClock()
    state = ProgressState(clock)
    state(started())
    state(LimitLearned("m1", "rpm", 200, 150))
    state(LimitLearned("m1", "rpm", 200, 100, "lowered"))  # the latest per metric is in force
    state(LimitLearned("m2", "tpm", None, 50_000))
    snapshot = state.snapshot()
    rows = {m.name: m for m in snapshot.models}
    assert [(x.metric, x.learned) for x in rows["m1"].learned] == [("rpm", 100)]
    assert "m1: rpm 100 (lowered: 429s without a figure; catalogue 200)" in format_line(snapshot)
    state(ended())
    summary = format_summary(state.snapshot())
    assert summary.endswith(
        "; m1: rpm 100 (lowered: 429s without a figure; catalogue 200)"
        "; m2: tpm 50,000 (stated by the service; catalogue none)"
    )


def test_other_processes_on_the_quota_show_in_the_line_and_the_summary() -> None:
    state = ProgressState(FakeClock())
    state(started())
    state(QuotaShared(2, "/cache/quota.sqlite"))
    assert "2 other processes using this quota" in format_line(state.snapshot())
    state(QuotaShared(1, "/cache/quota.sqlite"))
    assert "1 other process using this quota" in format_line(state.snapshot())
    state(QuotaShared(0, "/cache/quota.sqlite"))
    assert "using this quota" not in format_line(state.snapshot())
    state(ended())
    assert "the quota shared with 2 other processes" in format_summary(state.snapshot())


def test_a_ledger_that_failed_is_a_note_and_the_batch_paces_alone() -> None:
    state = ProgressState(FakeClock())
    state(started())
    state(QuotaShared(1, "/cache/quota.sqlite"))
    state(QuotaShared(0, "/cache/quota.sqlite", failed="the quota ledger failed: disk I/O"))
    snapshot = state.snapshot()
    assert snapshot.sharing == 0 and snapshot.notices == ("the quota ledger failed: disk I/O",)
    state(ended())
    assert format_summary(state.snapshot()).endswith("\nnote: the quota ledger failed: disk I/O")


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("stated", "rpm 150 (stated by the service; catalogue 5)"),
        ("message", "rpm 150 (stated in the 429's message; catalogue 5)"),
        ("lowered", "rpm 150 (lowered: 429s without a figure; catalogue 5)"),
        ("recovered", "rpm 150 (recovered: no more 429s; catalogue 5)"),
        ("raised", "rpm 150 (raised: discovery; catalogue 5)"),
        ("remembered", "rpm 150 (remembered; catalogue 5)"),
        ("shared", "rpm 150 (learned by another process; catalogue 5)"),
    ],
)
def test_every_source_of_a_working_limit_is_said_in_words(source: LimitSource, said: str) -> None:
    state = ProgressState(FakeClock())
    state(started())
    state(LimitLearned("m1", "rpm", 5, 150, source))
    assert format_line(state.snapshot()).endswith(f" · m1: {said}")
    assert format_learned(LimitLearned("m1", "rpm", 5, 150, source)) == said


def test_a_limit_started_from_then_raised_shows_the_latest() -> None:
    state = ProgressState(FakeClock())
    state(started())
    state(LimitLearned("m1", "rpm", 5, 20, "remembered"))
    assert "m1: rpm 20 (remembered; catalogue 5)" in format_line(state.snapshot())
    state(LimitLearned("m1", "rpm", 5, 40, "raised"))
    state(ended())
    assert format_summary(state.snapshot()).endswith(
        "; m1: rpm 40 (raised: discovery; catalogue 5)"
    )


def test_the_summary_says_the_batch_stopped_at_its_budget() -> None:
    """Before, a batch the budget stopped ended `... 11 not run ...` with nothing saying why."""
    from scriptgen_nb.engine.values import Result, budget_reached

    state = ProgressState(clock=lambda: 0.0, total=2)
    state(BatchStarted("b1", 2, ("m",), "auto", 4, 0.0))
    state(RequestFinished(Result(id="0", index=0, success=True, text="ok", model="m"), 1, 2))
    left = Result(id="1", index=1, success=False, error=budget_reached(0.004, 0.0015, 0.0039))
    state(RequestFinished(left, 2, 2))
    summary = format_summary(state.snapshot())
    assert summary.splitlines()[1] == (
        "stopped at its budget: the budget of $0.0040 would be crossed: $0.0015 spent, and the "
        "next request may cost up to $0.0039"
    )
