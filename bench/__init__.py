"""Benchmarks for scriptgen_nb: eleven scenarios, several contenders, the emulator over real HTTP.

`python -m bench.run` (or `make bench`) runs them and writes `bench/results.json`,
`bench/results.png` and `bench/BENCHMARKS.md`. Not part of `make test`. Every client-side
contender talks to the emulator in its own process (`emulator_proc`), so client and server never
share an interpreter. `scenarios` holds the first seven (issue 7), `real_service` the four of
the real service's ugly cases (issue 13). The package under test is imported, never modified.
"""
