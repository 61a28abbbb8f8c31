"""Gemini Batch API mode: hand a batch to Google's batch service, at half price, and back.

Modules, one job each: `plan.py` (the `mode=` / `deadline=` decision and the expected cost and
time of each option), `jobs.py` (inline requests and JSONL from `GenerationRequest`s, split by
size; submission with the intent recorded first; polling; cancel), `ingest.py` (answers matched
to requests, judged, priced at the batch price), `run.py` (a batch's whole course, and resuming
it from the log in any process). The log side is `store/batch_jobs.py` (the `batch_job` table).
Imports point down: nothing here imports `api`, `wiring` or `jupyter`.
"""

from __future__ import annotations

from .jobs import BatchApiSettings
from .plan import GOOGLE_TURNAROUND_S, BatchPlan, Option, Turnaround, plan_batch

__all__ = [
    "GOOGLE_TURNAROUND_S",
    "BatchApiSettings",
    "BatchPlan",
    "Option",
    "Turnaround",
    "plan_batch",
]
