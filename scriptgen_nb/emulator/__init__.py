"""A Gemini-compatible HTTP server for tests, demos and benchmarks.

The real google-genai SDK talks to it through `HttpOptions(base_url=emu.base_url)`. It enforces
per-model RPM/TPM/RPD windows with Google's 429 bodies, simulates latency, injects faults
deterministically, serves the Batch API and the Files API, and counts what it sees. On request
it also plays the real service's ugly cases: paid-tier quota names, 429s without details and
storms of them, a billing stop, refused keys, retired models, thinking that eats the output
budget, implicit caching, blocked prompts, odd finish reasons.
This package imports nothing from the rest of scriptgen_nb (in particular not the engine): it
exists to catch the engine's bugs.

    from scriptgen_nb.emulator import Emulator, EmulatorConfig
    with Emulator(EmulatorConfig(latency_scale=0)) as emu:
        ...  # genai.Client(api_key="k", http_options=types.HttpOptions(base_url=emu.base_url))
"""

from __future__ import annotations

from .config import (
    BatchConfig,
    ConfigError,
    EmulatorConfig,
    FaultConfig,
    ModelConfig,
    default_config,
    default_models,
    google_retirements,
)
from .server import Emulator

__all__ = [
    "BatchConfig",
    "ConfigError",
    "Emulator",
    "EmulatorConfig",
    "FaultConfig",
    "ModelConfig",
    "default_config",
    "default_models",
    "google_retirements",
]
