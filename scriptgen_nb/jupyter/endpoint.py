"""Where the magics send requests: Google when a key is set, else a local emulator they start.

The notebook session keeps at most one emulator. `%scriptgen emulator start` starts it on
purpose, and then batches use it even when a key is set (a tutorial never spends money by
surprise) until `%scriptgen emulator stop`. When no API key is set, the first batch starts one
with compressed quota windows (a "minute" of 10 s) and says so once. Either way the model
catalogue's windows are compressed to the emulator's, so pacing and rotation play out in
seconds. Cache keys include the endpoint, so emulator answers are never served to a later run
against Google.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from ..emulator import Emulator, EmulatorConfig
from ..engine.models import default_catalogue
from ..wiring import ENV_KEYS

EMULATOR_KEY = "local-emulator-key"
AUTO_MINUTE_S = 10.0
AUTO_DAY_S = 600.0


def auto_config() -> EmulatorConfig:
    """The emulator a keyless notebook gets: the default models, windows and latency compressed."""
    return EmulatorConfig(
        api_keys=(EMULATOR_KEY,), minute_s=AUTO_MINUTE_S, day_s=AUTO_DAY_S, latency_scale=0.25
    )


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
        if not self.chosen and any(os.environ.get(k, "").strip() for k in ENV_KEYS):
            return {}, None  # Google, or GOOGLE_GEMINI_BASE_URL
        started = self.emulator is None
        emu = self.start()
        config = emu.config
        catalogue = default_catalogue().with_windows(config.minute_s, config.day_s)
        note = None
        if not self.chosen and (not self.announced or started):
            self.announced = True
            note = (
                f"No {ENV_KEYS[0]} set: using the local Gemini emulator at {emu.base_url} "
                f"(simulated answers; a 'minute' lasts {config.minute_s:g}s). Set {ENV_KEYS[0]} "
                f"to use Google."
            )
        return {"base_url": emu.base_url, "api_key": EMULATOR_KEY, "catalogue": catalogue}, note


SESSION = LocalEmulator()

__all__ = ["AUTO_DAY_S", "AUTO_MINUTE_S", "EMULATOR_KEY", "SESSION", "LocalEmulator", "auto_config"]
