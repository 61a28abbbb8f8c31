"""The slots of one sliding window, in time order, with their input tokens summed as they go.

A `ModelLimiter` keeps a minute window and a day window of `Slot`s. Every routing decision asks
how many slots and how many tokens the minute window holds; keeping the token total as slots
come and go answers that in constant time instead of summing the window (thousands of slots at
a high limit) for every request that waits. Imports nothing outside `engine/`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)
class Slot:
    """One admitted request in the windows; its token count is corrected after the reply.

    Compared by identity: two requests sent at the same instant with the same estimate are
    still two slots, and forgetting one must not remove the other.
    """

    at: float
    tokens: int
    shared_id: int | None = None  # its id in a shared quota ledger (engine/ledger.py), if any
    sent_late: bool = False  # it left later after its admission than half the window's margin
    admitted_at: float = field(init=False)  # `at` as admitted (`at` moves to the send)

    def __post_init__(self) -> None:
        self.admitted_at = self.at


class SlotWindow:
    """Slots ordered by `at` (oldest first) and the sum of their tokens (`tokens`)."""

    __slots__ = ("_slots", "tokens")

    def __init__(self) -> None:
        self._slots: deque[Slot] = deque()
        self.tokens = 0

    def __len__(self) -> int:
        return len(self._slots)

    def __bool__(self) -> bool:
        return bool(self._slots)

    def __iter__(self) -> Iterator[Slot]:
        return iter(self._slots)

    def __getitem__(self, index: int) -> Slot:
        return self._slots[index]

    def append(self, slot: Slot) -> None:
        """Add the newest slot (callers append in time order, or fix it with `move_later`)."""
        self._slots.append(slot)
        self.tokens += slot.tokens

    def popleft(self) -> Slot:
        slot = self._slots.popleft()
        self.tokens -= slot.tokens
        return slot

    def discard(self, slot: Slot) -> None:
        """Remove `slot` if it is still here (it may have aged out already)."""
        index = self._find(slot)
        if index is not None:
            del self._slots[index]
            self.tokens -= slot.tokens

    def clear(self) -> None:
        self._slots.clear()
        self.tokens = 0

    def retoken(self, slot: Slot, tokens: int) -> None:
        """Count `tokens` for `slot` from now on (the service's figure replaces the estimate)."""
        if self._find(slot) is not None:
            self.tokens += tokens - slot.tokens

    def move_later(self, slot: Slot) -> None:
        """Move `slot`, whose time has just grown, right past the slots stamped before it."""
        index = self._find(slot)
        if index is None:
            return
        end = index
        while end + 1 < len(self._slots) and self._slots[end + 1].at < slot.at:
            end += 1
        if end > index:
            del self._slots[index]
            self._slots.insert(end, slot)

    def _find(self, slot: Slot) -> int | None:
        """Where `slot` is, searched from the newest end (the slots asked about are recent)."""
        for index in range(len(self._slots) - 1, -1, -1):
            if self._slots[index] is slot:
                return index
        return None
