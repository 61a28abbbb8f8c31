"""SlotWindow: the running token total always equals the sum over the slots it holds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scriptgen_nb.engine.window import Slot, SlotWindow

# One step on a window: add a slot (time, tokens), take the oldest, forget one (by position among
# all slots ever made, present or not), re-count one's tokens, or re-stamp one later.
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 1000), st.integers(0, 10_000)),
        st.tuples(st.just("popleft")),
        st.tuples(st.just("discard"), st.integers(0, 50)),
        st.tuples(st.just("retoken"), st.integers(0, 50), st.integers(0, 10_000)),
        st.tuples(st.just("move_later"), st.integers(0, 50), st.integers(0, 200)),
    ),
    max_size=80,
)


@given(STEPS)
def test_the_token_total_is_always_the_sum_over_the_slots_held(steps: list) -> None:
    window = SlotWindow()
    made: list[Slot] = []
    clock = 0
    for step in steps:
        match step:
            case ("append", dt, tokens):
                clock += dt
                made.append(Slot(clock, tokens))
                window.append(made[-1])
            case ("popleft",) if window:
                window.popleft()
            case ("discard", i) if i < len(made):
                window.discard(made[i])
            case ("retoken", i, tokens) if i < len(made):
                window.retoken(made[i], tokens)
                made[i].tokens = tokens  # what ModelLimiter.settle does after telling the windows
            case ("move_later", i, dt) if i < len(made):
                made[i].at += dt
                window.move_later(made[i])
        held = list(window)
        assert window.tokens == sum(s.tokens for s in held)
        assert len(window) == len(held) and bool(window) == bool(held)


def test_a_slot_stamped_later_moves_past_the_slots_sent_before_it() -> None:
    window = SlotWindow()
    a, b, c = Slot(1.0, 10), Slot(2.0, 20), Slot(3.0, 30)
    for slot in (a, b, c):
        window.append(slot)
    a.at = 2.5
    window.move_later(a)
    assert list(window) == [b, a, c]
    assert window.tokens == 60


def test_a_slot_already_gone_is_neither_removed_twice_nor_recounted() -> None:
    window = SlotWindow()
    old, new = Slot(1.0, 100), Slot(2.0, 5)
    window.append(old)
    window.append(new)
    assert window.popleft() is old  # aged out
    window.discard(old)
    window.retoken(old, 7_000)
    assert list(window) == [new] and window.tokens == 5
