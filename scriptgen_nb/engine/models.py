"""Model specifications (limits, prices, window lengths) and the catalogue they come from.

A `ModelSpec` says what one model may do for this account (RPM, input TPM, RPD), what it costs,
and how long its quota windows are (real 60 s / 1 day by default; compressed in tests and demos).
The default catalogue is `catalogue.toml` beside this file, dated; a user's TOML or JSON file,
a list of `ModelSpec`s, or model names override it. Imports nothing outside `engine/`.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigurationError, UnknownModelError
from .values import Usage

ENV_TIER = "SCRIPTGEN_TIER"
ENV_CATALOGUE = "SCRIPTGEN_CATALOGUE"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model as the engine paces, routes and prices it.

    `rpm`, `tpm` and `rpd` of None mean "no limit known"; 0 means "no quota at all" (the model
    is skipped). `priority` orders the default ladder (1 first); None keeps a model out of the
    default ladder but usable by name.

    Limits are where pacing starts. `discover=True` marks them as guesses (the bundled
    catalogue's): the engine raises them while the window fills without a 429. Limits a user
    states (a `ModelSpec`, a catalogue file) are trusted: learned down from 429s, never probed
    above, unless `discover=True`. `hard=True` makes them a cap nothing learned may exceed.
    """

    name: str
    priority: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    input_token_limit: int | None = None
    output_token_limit: int | None = None
    input_usd_per_1m: float = 0.0
    output_usd_per_1m: float = 0.0
    input_usd_per_1m_long: float | None = None
    output_usd_per_1m_long: float | None = None
    long_context_tokens: int = 200_000
    batch_discount: float = 0.5
    minute_s: float = 60.0
    day_s: float = 86_400.0
    status: str = ""
    discover: bool = False
    hard: bool = False

    def __post_init__(self) -> None:
        short = self.name.removeprefix("models/") if isinstance(self.name, str) else ""
        if not short.strip() or "/" in short:
            raise ConfigurationError(f"ModelSpec name {self.name!r} is not a Gemini model name")
        # "models/x" and "x" are one model: keep the short name, as routing and logs use it.
        object.__setattr__(self, "name", self.name.removeprefix("models/"))
        for name in ("priority", "rpm", "tpm", "rpd", "input_token_limit", "output_token_limit"):
            self._check_count(name, optional=True, positive=name.endswith("token_limit"))
        self._check_count("long_context_tokens")
        for name in (
            "input_usd_per_1m",
            "output_usd_per_1m",
            "input_usd_per_1m_long",
            "output_usd_per_1m_long",
        ):
            self._check_number(name, optional=name.endswith("_long"))
        for name in ("minute_s", "day_s"):
            self._check_number(name, positive=True, what="window lengths")
        self._check_number("batch_discount")
        if not 0 <= self.batch_discount <= 1:
            raise ConfigurationError(f"ModelSpec {self.name!r}: batch_discount must be in [0, 1]")
        if not isinstance(self.status, str):
            raise ConfigurationError(f"ModelSpec {self.name!r}: status must be text")
        for flag in ("discover", "hard"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigurationError(
                    f"ModelSpec {self.name!r}: {flag} must be True or False, "
                    f"not {getattr(self, flag)!r}"
                )

    def _check_count(self, field: str, *, optional: bool = False, positive: bool = False) -> None:
        """A whole number (>= 0, or > 0 when `positive`); None allowed when `optional`."""
        value = getattr(self, field)
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < int(positive):
            raise ConfigurationError(
                f"ModelSpec {self.name!r}: {field} must be {'> 0' if positive else '>= 0'}"
                f"{' or None' if optional else ''} (a whole number), not {value!r}"
            )

    def _check_number(
        self, field: str, *, optional: bool = False, positive: bool = False, what: str = ""
    ) -> None:
        """A finite number (>= 0, or > 0 when `positive`); None allowed when `optional`."""
        value = getattr(self, field)
        if value is None and optional:
            return
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
            or (positive and value == 0)
        ):
            rule = "must be positive" if positive else f"must be >= 0{' or None' * optional}"
            raise ConfigurationError(
                f"ModelSpec {self.name!r}: {what or field} {rule} (a finite number), "
                f"{field}={value!r}"
            )

    @property
    def usable(self) -> bool:
        """False when the account has no quota at all for this model (a stated limit of 0).

        A guessed 0 (`discover`) is not a refusal: one try tells whether the tier has quota.
        """
        return self.discover or 0 not in (self.rpm, self.tpm, self.rpd)

    def cost_usd(self, usage: Usage, *, batch: bool = False) -> float:
        """What `usage` costs on this model; thought tokens are billed as output."""
        long = usage.input > self.long_context_tokens
        input_price = self.input_usd_per_1m
        output_price = self.output_usd_per_1m
        if long and self.input_usd_per_1m_long is not None:
            input_price = self.input_usd_per_1m_long
        if long and self.output_usd_per_1m_long is not None:
            output_price = self.output_usd_per_1m_long
        cost = (usage.input * input_price + (usage.output + usage.thoughts) * output_price) / 1e6
        return cost * (self.batch_discount if batch else 1.0)

    def with_windows(self, minute_s: float, day_s: float) -> ModelSpec:
        """The same model with compressed (or real) quota windows."""
        return replace(self, minute_s=minute_s, day_s=day_s)


_SPEC_FIELDS = {f.name for f in fields(ModelSpec)}
_ENTRY_FIELDS = _SPEC_FIELDS - {"name"}  # a model's name is its table's key


class ModelCatalogue:
    """Model specs by name, in file order; `ladder()` is the default preference order."""

    def __init__(self, specs: Iterable[ModelSpec], *, as_of: str = "", tier: str = "") -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            self._specs[spec.name] = spec
        self.as_of = as_of
        self.tier = tier

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.removeprefix("models/") in self._specs

    def __iter__(self) -> Any:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"ModelCatalogue({list(self._specs)}, as_of={self.as_of!r}, tier={self.tier!r})"

    def get(self, name: str) -> ModelSpec:
        try:
            return self._specs[name.removeprefix("models/")]
        except KeyError:
            raise UnknownModelError(name, list(self._specs)) from None

    def ladder(self) -> list[ModelSpec]:
        """The default ladder: usable models with a priority, most preferred first."""
        ranked = [s for s in self._specs.values() if s.priority is not None and s.usable]
        return sorted(ranked, key=lambda s: s.priority or 0)

    def resolve(
        self, models: str | ModelSpec | Sequence[str | ModelSpec] | None
    ) -> list[ModelSpec]:
        """Turn the `models=` argument into a ladder: None → default; names → catalogue specs.

        A comma-separated string is a ladder too ("gemini-3.8-flash,gemini-2.5-flash-lite").
        """
        if models is None:
            ladder = self.ladder()
            if not ladder:
                raise ConfigurationError(
                    "The catalogue has no usable model with a priority; pass models=[...]."
                )
            return ladder
        if isinstance(models, str):
            models = [m.strip() for m in models.split(",") if m.strip()]
        elif isinstance(models, ModelSpec):
            models = [models]
        if not isinstance(models, Sequence) or not all(
            isinstance(m, str | ModelSpec) for m in models
        ):
            raise ConfigurationError(
                f"models={models!r}: use a model name, a comma-separated ladder "
                "('gemini-3.8-flash,gemini-2.5-flash-lite'), a ModelSpec, or a list of those."
            )
        ladder = [m if isinstance(m, ModelSpec) else self.get(m) for m in models]
        if not ladder:
            raise ConfigurationError("models= is empty; name at least one model.")
        names = [m.name for m in ladder]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"models= names a model twice: {names}")
        unusable = [m.name for m in ladder if not m.usable]
        if len(unusable) == len(ladder):
            raise ConfigurationError(
                f"No quota for {', '.join(unusable)} in tier {self.tier or 'given'} "
                f"(a limit of 0). Set {ENV_TIER}=tier1 if your project has billing, or pick "
                "other models."
            )
        return ladder

    def with_windows(self, minute_s: float, day_s: float) -> ModelCatalogue:
        """The whole catalogue with compressed quota windows (for demos and tests)."""
        return ModelCatalogue(
            (s.with_windows(minute_s, day_s) for s in self), as_of=self.as_of, tier=self.tier
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, tier: str | None = None) -> ModelCatalogue:
        """Build from parsed TOML/JSON: `{as_of, default_tier, models: {name: {...}}}`."""
        chosen = tier or os.environ.get(ENV_TIER) or str(data.get("default_tier", "free"))
        models = data.get("models")
        if not isinstance(models, Mapping) or not models:
            raise ConfigurationError("A catalogue needs a non-empty [models] table.")
        specs = []
        for name, entry in models.items():
            if not isinstance(entry, Mapping):
                raise ConfigurationError(
                    f"Catalogue model {name!r} must be a table of fields, not {entry!r}."
                )
            entry = dict(entry)
            limits = entry.pop("limits", {})
            if not isinstance(limits, Mapping) or not all(
                isinstance(v, Mapping) for v in limits.values()
            ):
                raise ConfigurationError(
                    f"Catalogue model {name!r}: limits must be one table per tier, e.g. "
                    "limits.free = { rpm = 10, tpm = 250000, rpd = 20 }."
                )
            if limits:
                if chosen not in limits:
                    raise ConfigurationError(
                        f"Catalogue model {name!r} has no limits for tier {chosen!r} "
                        f"(it has: {', '.join(limits)}); set {ENV_TIER} to one of those."
                    )
                entry.update(limits[chosen])
            unknown = set(entry) - _ENTRY_FIELDS
            if unknown:
                raise ConfigurationError(
                    f"Catalogue model {name!r} has unknown fields {sorted(unknown)}; "
                    f"allowed: {sorted(_ENTRY_FIELDS)} and limits.<tier>."
                )
            try:
                specs.append(ModelSpec(name=name, **entry))
            except TypeError as exc:  # e.g. rpm = "ten"
                raise ConfigurationError(
                    f"Catalogue model {name!r} has a value of the wrong type: {exc}"
                ) from exc
        return cls(specs, as_of=str(data.get("as_of", "")), tier=chosen)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, tier: str | None = None) -> ModelCatalogue:
        """Load a TOML or JSON catalogue file (same layout as the bundled catalogue.toml)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"Cannot read model catalogue {path}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigurationError(f"Model catalogue {path} is not UTF-8 text: {exc}") from exc
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"Model catalogue {path} is not valid: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigurationError(
                f"Model catalogue {path} is not valid: its top level must be an object with "
                f"a models table, not {type(data).__name__}."
            )
        return cls.from_mapping(data, tier=tier)


def default_catalogue(tier: str | None = None) -> ModelCatalogue:
    """The bundled catalogue, or the file named by SCRIPTGEN_CATALOGUE, for `tier`."""
    override = os.environ.get(ENV_CATALOGUE)
    if override:
        return ModelCatalogue.from_file(override, tier=tier)
    text = resources.files(__package__).joinpath("catalogue.toml").read_text(encoding="utf-8")
    bundled = ModelCatalogue.from_mapping(tomllib.loads(text), tier=tier)
    # The bundled limits are guesses (Google no longer publishes them): discovered, not trusted.
    return ModelCatalogue(
        (replace(spec, discover=True) for spec in bundled), as_of=bundled.as_of, tier=bundled.tier
    )


def seed_models(*, minute_s: float = 60.0, day_s: float = 86_400.0) -> list[ModelSpec]:
    """The seed's three models with the RPM limits its table uses (for comparisons)."""
    catalogue = default_catalogue(tier="free")
    seed_rpm = {"gemini-2.5-pro": 2, "gemini-2.5-flash": 10, "gemini-2.0-flash-lite": 30}
    return [
        replace(
            catalogue.get(name),
            priority=i + 1,
            rpm=rpm,
            tpm=250_000,
            rpd=None,
            minute_s=minute_s,
            day_s=day_s,
        )
        for i, (name, rpm) in enumerate(seed_rpm.items())
    ]
