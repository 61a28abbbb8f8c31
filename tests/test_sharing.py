"""A batch's side of a shared quota ledger (engine/sharing.py), on a real SQLite ledger file.

Two `SharedQuota`s on one file stand for two processes' batches (each its own ledger owner, as
in two processes): what one takes, learns or is refused is what the other is told. The loop
clock of each batch is `now`; the wall clock is `now + WALL` for both.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import scriptgen_nb as sg
from scriptgen_nb.engine.backend import FakeBackend
from scriptgen_nb.engine.errors import QuotaLedgerError
from scriptgen_nb.engine.ledger import windows_at
from scriptgen_nb.engine.limits import Learned, ModelLimiter
from scriptgen_nb.engine.models import ModelSpec
from scriptgen_nb.engine.sharing import CLOCK_SLACK_S, FLUSH_WITHIN, SharedQuota
from scriptgen_nb.engine.values import Event, ModelStateChanged, QuotaShared
from scriptgen_nb.engine.window import Slot
from scriptgen_nb.quota import LocalLedger

WALL = 1_000_000.0
PER_WINDOW = 10


@dataclass
class Batch:
    """One batch's limiter and shared quota, and what it was told."""

    quota: SharedQuota
    limiter: ModelLimiter
    events: list[Event] = field(default_factory=list)
    adopted: list[Learned] = field(default_factory=list)

    def admit(self, now: float, tokens: int = 100, want: int = 1) -> Slot | None:
        return self.quota.admit(
            self.limiter,
            tokens,
            now,
            lambda limiter, learned: self.adopted.append(learned),
            {self.limiter.spec.name: self.limiter},
            want=want,
        )


def batch(path: Path, rpm: int | None = PER_WINDOW, **spec: object) -> Batch:
    limiter = ModelLimiter(
        ModelSpec("m", rpm=rpm, minute_s=1.0, day_s=1000.0, **spec),  # type: ignore[arg-type]
        margin_s=0.05,
    )
    events: list[Event] = []
    quota = SharedQuota(LocalLedger(path, "endpoint key"), events.append)
    quota.wall_offset = WALL
    return Batch(quota, limiter, events)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Batch, Batch]:
    path = tmp_path / "quota.sqlite"
    return batch(path), batch(path)


def test_two_batches_admit_together_what_one_window_holds(pair: tuple[Batch, Batch]) -> None:
    one, two = pair
    granted = [b.admit(0.0) for _ in range(PER_WINDOW) for b in (one, two)]
    assert sum(slot is not None for slot in granted) == PER_WINDOW
    refused = one if granted[-2] is None else two
    assert refused.limiter.wait_s(0.0, 100) > 0  # queued until the window has room
    assert refused.admit(1.2) is not None  # the first slots left the window (1 s + margin)


def test_a_slot_given_back_is_room_for_the_other(pair: tuple[Batch, Batch]) -> None:
    one, two = pair
    slots = [one.admit(0.0) for _ in range(PER_WINDOW)]
    assert two.admit(0.0) is None
    first = slots[0]
    assert first is not None and first.shared_id is not None
    one.quota.forget(first)  # refused by the service, or never sent
    assert first.shared_id is None
    two.limiter.queued_until = -math.inf
    assert two.admit(0.01) is not None


def test_a_send_that_came_late_is_known_to_the_other_before_the_windows_edge(
    pair: tuple[Batch, Batch],
) -> None:
    """A slot whose request left later than half the margin after its admission (a burst after
    a hold) asks for a flush: the other batch must not free it at its admission time plus the
    window, before the service does. One sent promptly waits for the next admission."""
    one, two = pair
    late, prompt = one.admit(0.0), one.admit(0.0)
    assert late is not None and prompt is not None
    for _ in range(PER_WINDOW - 2):
        assert one.admit(0.0) is not None
    # Stamped as the backend does: handed to the transport, then its last byte written. 0.2 s
    # after its admission is beyond half the 0.05 s margin, though the second step is not.
    one.limiter.sent(late, 0.2)
    one.limiter.sent(late, 0.201)
    one.limiter.sent(prompt, 0.01)
    flush_in = [one.quota.settle(slot, one.limiter, 0.3) for slot in (late, prompt)]
    assert flush_in == [pytest.approx(FLUSH_WITHIN * 1.0), None]  # a tenth of the 1 s minute
    one.quota.flush()  # the engine's loop calls it then
    # Past every slot's window (1 s + margin) but the late one's: room for all but one.
    two.limiter.queued_until = -math.inf
    granted = [two.admit(1.06) for _ in range(PER_WINDOW)]
    assert sum(slot is not None for slot in granted) == PER_WINDOW - 1


def test_late_sends_answered_together_are_flushed_once_and_in_time(
    pair: tuple[Batch, Batch],
) -> None:
    """A burst's late settles share one flush, a tenth of the minute after the first answer;
    one answered near the edge where the others would free its slot is flushed by half the
    time left."""
    one, _ = pair
    slots = [one.admit(0.0) for _ in range(3)]
    for slot in slots:
        assert slot is not None
        one.limiter.sent(slot, 0.2)
    first, second, third = slots
    assert first is not None and second is not None and third is not None
    assert one.quota.settle(first, one.limiter, 0.3) == pytest.approx(0.1)  # by 0.4
    assert one.quota.settle(second, one.limiter, 0.35) is None  # the flush at 0.4 writes it
    one.quota.flush()
    # Freed by the others at 0 + 1 s + 0.05 s margin: answered at 0.95, flushed by 1.0.
    assert one.quota.settle(third, one.limiter, 0.95) == pytest.approx(0.05)


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The `want` of every admission asked of a local ledger, in order."""
    wants: list[int] = []
    admit = LocalLedger.admit
    monkeypatch.setattr(
        LocalLedger, "admit", lambda self, *a, **k: wants.append(k["want"]) or admit(self, *a, **k)
    )
    return wants


def usage(path: Path, limiter: ModelLimiter) -> tuple[int, int]:
    """(requests, input tokens) of `limiter`'s model in the ledger's minute, every batch's."""
    reader = LocalLedger(path, "endpoint key")
    try:
        windows = windows_at(limiter.spec, WALL, limiter.margin_s)
        return reader.usage(limiter.spec.name, now=WALL, windows=windows)[:2]
    finally:
        reader.close()


def test_a_burst_asks_the_ledger_once_and_its_granted_slots_serve_the_next_requests(
    pair: tuple[Batch, Batch], asked: list[int]
) -> None:
    one, two = pair
    slots = [one.admit(0.0, want=PER_WINDOW - i) for i in range(PER_WINDOW)]
    assert all(slot is not None for slot in slots) and asked == [PER_WINDOW]
    assert len({slot.shared_id for slot in slots if slot is not None}) == PER_WINDOW
    assert one.admit(0.0) is None and two.admit(0.0) is None  # the window is full for both


def test_a_burst_granted_short_waits_for_room_once_its_grants_are_used(
    pair: tuple[Batch, Batch], asked: list[int]
) -> None:
    """The ledger refused the rest with the grant: the batch does not ask again to hear it,
    and waits for the room it was told of once the slots it was granted are used."""
    one, two = pair
    assert two.admit(0.0, want=5) is not None  # half the window is the other's
    slots = [one.admit(0.01, want=10 - i) for i in range(5)]
    assert all(slot is not None for slot in slots) and asked == [5, 10]
    # Its own window holds 5 of 10; the shared one is full until the other's slots leave at
    # 0 + 1 s + 0.05 s margin.
    assert one.limiter.wait_s(0.01, 100) == pytest.approx(1.04 + CLOCK_SLACK_S)
    assert asked == [5, 10]


def test_a_granted_slot_serves_a_larger_request_and_takes_its_estimate(tmp_path: Path) -> None:
    # Granted for the asker's 100 input tokens; the next request is estimated at 150, which
    # the shared windows hold from the next write (here a flush) on.
    path = tmp_path / "quota.sqlite"
    one = batch(path)
    assert one.admit(0.0, tokens=100, want=3) is not None
    larger = one.admit(0.0, tokens=150)
    assert larger is not None and larger.shared_id is not None
    one.quota.flush()
    assert usage(path, one.limiter) == (3, 100 + 150 + 100)


def test_a_granted_slot_is_late_from_its_grant_and_unused_ones_are_given_back(
    pair: tuple[Batch, Batch],
) -> None:
    one, two = pair
    first = one.admit(0.0, want=4)
    later = one.admit(0.04)  # served from the grant made at 0.0 (within the 0.05 s margin)
    assert first is not None and later is not None and later.admitted_at == 0.0
    one.limiter.sent(later, 0.31)
    assert later.sent_late  # the ledger stamped it at 0.0: the others must hear of its send
    one.quota.close()  # two granted slots never used: room for the other batch
    assert sum(two.admit(0.4) is not None for _ in range(PER_WINDOW)) == PER_WINDOW - 2


def test_grants_not_used_at_once_are_given_back_and_the_ledger_asked_again(
    tmp_path: Path, asked: list[int]
) -> None:
    path = tmp_path / "quota.sqlite"
    one = batch(path)
    assert one.admit(0.0, want=3) is not None
    assert one.admit(1.0) is not None  # past the margin: the two kept are not used
    assert asked == [3, 1] and usage(path, one.limiter) == (2, 200)


def test_news_that_narrows_a_model_gives_back_its_grants_and_a_raise_does_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "quota.sqlite"
    one, two = batch(path), batch(path)
    other = ModelLimiter(ModelSpec("n", rpm=PER_WINDOW, minute_s=1.0, day_s=1000.0), margin_s=0.05)
    limiters = {"m": one.limiter, "n": other}

    def ask(limiter: ModelLimiter, want: int = 1) -> Slot | None:
        return one.quota.admit(limiter, 100, 0.0, lambda *_: None, limiters, want=want)

    assert ask(other, want=4) is not None  # three of n's slots granted and kept
    two.quota.learned("n", Learned("rpm", PER_WINDOW, 2 * PER_WINDOW, "raised"))
    assert ask(one.limiter) is not None  # told of the raise: the grants stay good
    assert usage(path, other) == (4, 400)
    two.quota.held("n", "parked", 0.5)
    assert ask(one.limiter) is not None  # told of the hold: they are given back
    assert usage(path, other) == (1, 100)


def test_a_limit_learned_by_one_reaches_the_other_at_its_next_admission(
    pair: tuple[Batch, Batch],
) -> None:
    one, two = pair
    slot = one.admit(0.0)
    assert slot is not None
    learned = one.limiter.rate_limited(0.0, slot, 0.5, "rpm", 4, "stated")
    assert learned is not None
    one.quota.learned("m", learned)
    assert two.admit(0.0) is not None
    assert two.limiter.rpm == 4 and two.limiter.limits["rpm"].source == "shared"
    assert [(a.metric, a.learned, a.source) for a in two.adopted] == [("rpm", 4, "shared")]
    assert one.adopted == []  # its own news is not news to it


def test_a_model_held_by_one_is_held_for_the_other(pair: tuple[Batch, Batch]) -> None:
    one, two = pair
    one.quota.held("m", "parked", 0.5)
    assert two.admit(0.0) is None
    assert two.limiter.state(0.0) == "parked"
    assert [e for e in two.events if isinstance(e, ModelStateChanged)] == [
        ModelStateChanged("m", "parked", 0.5, "another process at this quota was refused")
    ]
    assert two.admit(0.6) is not None


def test_the_other_processes_are_told_to_listeners(tmp_path: Path) -> None:
    path = tmp_path / "quota.sqlite"
    one = batch(path)
    assert one.admit(0.0) is not None
    with sqlite3.connect(path) as db:  # another process's request, as it would write it
        db.execute(
            "INSERT INTO slot (quota, model, at, tokens, process, owner) "
            "VALUES (?, 'm', ?, 1, ?, 'b')",
            ("endpoint key", WALL + 1.0, "elsewhere:1"),
        )
    assert one.admit(1.5) is not None  # the count is taken again at most once a second
    assert [e for e in one.events if isinstance(e, QuotaShared)] == [QuotaShared(1, str(path))]


def test_a_ledger_that_fails_is_said_once_and_the_batch_paces_alone(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    alone = batch(blocked / "quota.sqlite")
    slots = [alone.admit(0.0) for _ in range(3)]
    assert all(slot is not None and slot.shared_id is None for slot in slots)
    failures = [e for e in alone.events if isinstance(e, QuotaShared)]
    assert len(failures) == 1 and failures[0].failed is not None
    assert "paces alone" in failures[0].failed
    assert alone.quota.active is False
    with pytest.raises(QuotaLedgerError):
        LocalLedger(blocked / "quota.sqlite", "q").check()


def test_a_model_without_limits_is_not_asked_about(tmp_path: Path) -> None:
    """Nothing to pace (a spec without limits): the ledger costs nothing per request."""
    unlimited = batch(tmp_path / "quota.sqlite", rpm=None)
    slot = unlimited.admit(0.0)
    assert slot is not None and slot.shared_id is None
    assert not (tmp_path / "quota.sqlite").exists()


@pytest.mark.parametrize(("concurrency", "shared"), [("auto", True), ("seed", False)])
def test_a_batch_paces_through_the_ledger_unless_it_paces_nothing(
    quota_ledger_in_tmp: Path, concurrency: str, shared: bool
) -> None:
    """The seed's formula sends without pacing, by design (a comparison): no ledger either."""
    results = sg.batch_generate(
        ["a", "b"],
        models=[sg.ModelSpec("m", priority=1, rpm=100)],
        backend=FakeBackend(),
        max_concurrency=concurrency,
    )
    assert all(r.success for r in results)
    assert quota_ledger_in_tmp.exists() is shared


def test_a_batch_asks_for_its_waiting_requests_slots_together(
    quota_ledger_in_tmp: Path, asked: list[int]
) -> None:
    """The engine tells the ledger how many requests could go (a known-length batch's), so a
    window's worth is admitted in one transaction, not one per request."""
    results = sg.batch_generate(
        [f"prompt {i}" for i in range(30)],
        models=[sg.ModelSpec("m", priority=1, rpm=100)],
        backend=FakeBackend(),
        max_concurrency=8,
    )
    assert all(r.success for r in results)
    assert asked[0] == 8 and len(asked) < 30  # the concurrency's worth, then as slots free
