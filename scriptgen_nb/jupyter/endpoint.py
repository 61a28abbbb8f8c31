"""The kernel's endpoint: Google (or GOOGLE_GEMINI_BASE_URL) when set, else a local emulator.

The notebook session keeps at most one emulator. `%scriptgen emulator start` starts it on
purpose, and then batches use it even when a key is set (a tutorial never spends money by
surprise) until `%scriptgen emulator stop`. When neither an API key nor GOOGLE_GEMINI_BASE_URL
is set, the first batch starts one with compressed quota windows (a "minute" of 10 s) and says
so once. Either way the model catalogue's windows are compressed to the emulator's, so pacing
and rotation play out in seconds. `%load_ext scriptgen_nb` registers `SESSION` as the kernel's
endpoint (endpoints.use_session), so the Python API in the same kernel (batch_generate, the
project functions, the Batch API, a retry) goes where the magics go unless a call names its
own endpoint; whichever comes first starts the emulator, and the note is said once. Cache keys
name where answers come from, so emulator answers are never served to a later run against
Google.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from ..batch_api import BatchApiSettings
from ..emulator import Emulator, EmulatorConfig
from ..engine.models import default_catalogue
from ..wiring import ENV_BASE_URL, ENV_KEYS

EMULATOR_KEY = "local-emulator-key"
AUTO_MINUTE_S = 10.0
AUTO_DAY_S = 600.0


def auto_config() -> EmulatorConfig:
    """The emulator a keyless notebook gets: the default models, windows and latency compressed."""
    return EmulatorConfig(
        api_keys=(EMULATOR_KEY,), minute_s=AUTO_MINUTE_S, day_s=AUTO_DAY_S, latency_scale=0.25
    )


def emulator_batch_api(config: EmulatorConfig) -> BatchApiSettings:
    """How Batch API jobs are watched on an emulator: its jobs end in seconds, so the plan
    expects that and the wait polls at that pace (Google's: minutes, and a 24 h target)."""
    seconds = (config.batch.pending_s + config.batch.running_s) * config.latency_scale
    # At least a poll's time: an emulator without latency ends its jobs at once.
    return BatchApiSettings(turnaround_s=max(seconds, 0.5), poll_initial_s=0.5, poll_max_s=2.0)


@dataclass
class LocalEmulator:
    """The session's emulator, if any (one per kernel)."""

    emulator: Emulator | None = None
    announced: bool = False
    chosen: bool = False  # started on purpose: used even when a key is set

    def start(self, config: EmulatorConfig | None = None, *, chosen: bool = False) -> Emulator:
        """Start it (a running one is replaced when a config is given)."""
        self.chosen = self.chosen or chosen
        if self.emulator is not None:
            if config is None:
                return self.emulator
            self.stop()
        config = config or auto_config()
        if EMULATOR_KEY not in config.api_keys:
            config = replace(config, api_keys=(*config.api_keys, EMULATOR_KEY))
        self.emulator = Emulator(config).start()
        return self.emulator

    def stop(self) -> bool:
        if self.emulator is None:
            return False
        self.emulator.stop()
        self.emulator = None
        self.chosen = False
        return True

    def status(self) -> str:
        emu = self.emulator
        if emu is None:
            return "no local emulator running"
        config = emu.config
        return (
            f"local Gemini emulator at {emu.base_url}: a 'minute' is {config.minute_s:g}s, a 'day' "
            f"{config.day_s:g}s; models: {', '.join(sorted(config.models))}"
        )

    def options(self) -> tuple[dict[str, Any], str | None]:
        """Batch options for the endpoint to use, and a message to show (once) when it is local."""
        configured = (os.environ.get(k, "").strip() for k in (*ENV_KEYS, ENV_BASE_URL))
        if not self.chosen and any(configured):
            return {}, None  # Google, or GOOGLE_GEMINI_BASE_URL
        started = self.emulator is None
        emu = self.start()
        config = emu.config
        catalogue = default_catalogue().with_windows(config.minute_s, config.day_s)
        note = None
        if not self.chosen and (not self.announced or started):
            self.announced = True
            note = (
                f"No {ENV_KEYS[0]} set: this kernel uses the local Gemini emulator at "
                f"{emu.base_url} (simulated answers; a 'minute' lasts {config.minute_s:g}s), for "
                f"the magics and the Python API alike. Set {ENV_KEYS[0]} to use Google."
            )
        endpoint = {
            "base_url": emu.base_url,
            "api_key": EMULATOR_KEY,
            "catalogue": catalogue,
            "batch_api": emulator_batch_api(config),
        }
        return endpoint, note

    def use(self) -> dict[str, Any]:
        """The options of `options()`, its note printed (in the caller's cell) when there is one."""
        endpoint, note = self.options()
        if note:
            print(note)
        return endpoint

    def current(self) -> dict[str, Any]:
        """The options of the running emulator when batches use it, else {}; starts nothing."""
        return self.options()[0] if self.emulator is not None else {}


SESSION = LocalEmulator()

__all__ = [
    "AUTO_DAY_S",
    "AUTO_MINUTE_S",
    "EMULATOR_KEY",
    "SESSION",
    "LocalEmulator",
    "auto_config",
    "emulator_batch_api",
]
