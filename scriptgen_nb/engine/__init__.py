"""The batch engine: async, no Jupyter, no DuckDB, no printing (DESIGN rule 1).

Modules: `values` (requests, results, events), `errors` (the exception tree), `models` (ModelSpec
and the catalogue), `pricing` (prices by the Pacific day, unknown prices), `listing` (the
endpoint's own model list), `identity` (an API key's fingerprint), `limits` (sliding-window
limiters), `policy` (retry and concurrency rules), `routing` (which model takes a request),
`verdict` (what a reply means), `backend` (google-genai and a fake), `runner` (BatchEngine).
"""
