"""Model specifications (limits, prices, window lengths) and the catalogue they come from.

A `ModelSpec` says what one model may do for this account (RPM, input TPM, RPD), what it costs,
and how long its quota windows are (real 60 s / 1 day by default; compressed in tests and demos).
The default catalogue is `catalogue.toml` beside this file, dated; a user's TOML or JSON file,
a list of `ModelSpec`s, or model names override it. Imports nothing outside `engine/`.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigurationError, UnknownModelError
from .pricing import Price, as_date, catalogue_day
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

    Prices are USD per 1M tokens; None (the default) means unknown: such a model's cost is
    None, never $0, and a `budget_usd` run refuses it. Cached input
    (`cached_input_usd_per_1m`, None: the input price) is billed apart from the rest of the
    input. `prices` are dated prices (`Price(until=..., ...)`, or mappings), each in force up
    to and including its `until` day (Pacific time); after the last, the base prices apply.
    `shutdown` is the day Google retires the model: from then on it is left out of default
    ladders, and naming it is reported.
    """

    name: str
    priority: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    input_token_limit: int | None = None
    output_token_limit: int | None = None
    input_usd_per_1m: float | None = None
    output_usd_per_1m: float | None = None
    input_usd_per_1m_long: float | None = None
    output_usd_per_1m_long: float | None = None
    long_context_tokens: int = 200_000
    batch_discount: float = 0.5
    minute_s: float = 60.0
    day_s: float = 86_400.0
    status: str = ""
    discover: bool = False
    hard: bool = False
    cached_input_usd_per_1m: float | None = None
    prices: tuple[Price, ...] = ()
    shutdown: date | None = None

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
            "cached_input_usd_per_1m",
            "input_usd_per_1m_long",
            "output_usd_per_1m_long",
        ):
            self._check_number(name, optional=True)
        if isinstance(self.prices, Mapping) or not isinstance(self.prices, list | tuple):
            raise ConfigurationError(
                f"ModelSpec {self.name!r}: prices must be a list of dated prices, not "
                f"{self.prices!r}."
            )
        dated = sorted(
            (Price.dated(p, self.name) for p in self.prices), key=lambda p: p.until or date.min
        )
        if len({p.until for p in dated}) != len(dated):
            raise ConfigurationError(f"ModelSpec {self.name!r}: two dated prices end on one day.")
        object.__setattr__(self, "prices", tuple(dated))
        if self.shutdown is not None:
            shutdown = as_date(self.shutdown, f"ModelSpec {self.name!r}: shutdown")
            object.__setattr__(self, "shutdown", shutdown)
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

    @property
    def priced(self) -> bool:
        """Whether this model's price is known (a cost can be computed and a budget kept)."""
        return self.input_usd_per_1m is not None and self.output_usd_per_1m is not None

    def price_on(self, day: date) -> Price:
        """The price in force on `day` (Pacific): the first dated price not yet over, else
        the base prices."""
        for price in self.prices:
            if price.until is not None and day <= price.until:
                return price
        return Price(
            self.input_usd_per_1m,
            self.output_usd_per_1m,
            self.cached_input_usd_per_1m,
            self.input_usd_per_1m_long,
            self.output_usd_per_1m_long,
        )

    def cost_usd(
        self, usage: Usage, *, batch: bool = False, at: float | None = None
    ) -> float | None:
        """What `usage` costs on this model, at the price in force on the Pacific date of `at`
        (POSIX seconds; None: today, `pricing.catalogue_day`), at the Batch API's share when
        `batch`. None when the price is unknown; impossible usage (`Usage.problem`) costs 0."""
        cost = self.price_on(catalogue_day(at)).cost_usd(usage.billable, self.long_context_tokens)
        if cost is None:
            return None
        return cost * (self.batch_discount if batch else 1.0)

    def retired_on(self, today: date) -> bool:
        """Whether Google has shut this model down by `today` (its `shutdown` date)."""
        return self.shutdown is not None and today >= self.shutdown

    def with_windows(self, minute_s: float, day_s: float) -> ModelSpec:
        """The same model with compressed (or real) quota windows."""
        return replace(self, minute_s=minute_s, day_s=day_s)


_SPEC_FIELDS = {f.name for f in fields(ModelSpec)}
_ENTRY_FIELDS = _SPEC_FIELDS - {"name"}  # a model's name is its table's key
_LIMITS = frozenset({"rpm", "tpm", "rpd"})


@dataclass(frozen=True, slots=True)
class ListedModel:
    """A model as the endpoint's own list (`GET models`) shows it."""

    name: str
    input_token_limit: int | None = None
    output_token_limit: int | None = None


# The endpoint's model list by name (`engine/listing.py`); None where it could not be read.
Listing = Mapping[str, ListedModel]

# Where a model only the endpoint lists starts: careful figures (a 3.x free tier's), discovered
# upwards; no daily limit is assumed, and no price.
LISTED_RPM, LISTED_TPM = 5, 250_000
LISTED_STATUS = (
    "listed by the endpoint, not in the catalogue: careful starting limits, price unknown"
)


class ModelCatalogue:
    """Model specs by name, in file order; `ladder()` is the default preference order.

    `minute_s` / `day_s` are its window lengths (real, or compressed by `with_windows`), which a
    model only the endpoint lists is given too.
    """

    def __init__(
        self,
        specs: Iterable[ModelSpec],
        *,
        as_of: str = "",
        tier: str = "",
        minute_s: float = 60.0,
        day_s: float = 86_400.0,
    ) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            self._specs[spec.name] = spec
        self.as_of = as_of
        self.tier = tier
        self.minute_s = minute_s
        self.day_s = day_s

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.removeprefix("models/") in self._specs

    def __iter__(self) -> Any:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"ModelCatalogue({list(self._specs)}, as_of={self.as_of!r}, tier={self.tier!r})"

    def get(self, name: str) -> ModelSpec:
        short = name.removeprefix("models/")
        try:
            return self._specs[short]
        except KeyError:
            known = list(self._specs)
            raise UnknownModelError(name, known, close=_close(short, known)) from None

    def ladder(
        self, *, today: date | None = None, listed: Listing | None = None
    ) -> list[ModelSpec]:
        """The default ladder: usable models with a priority, most preferred first, without
        those Google has retired by `today` (`pricing.catalogue_day()` when None) and, when the
        endpoint's list `listed` is known, without those it does not list."""
        today = today or catalogue_day()
        ranked = [
            s
            for s in self._specs.values()
            if s.priority is not None
            and s.usable
            and not s.retired_on(today)
            and (listed is None or s.name in listed)
        ]
        return sorted(ranked, key=lambda s: s.priority or 0)

    def resolve(
        self,
        models: str | ModelSpec | Sequence[str | ModelSpec] | None,
        *,
        today: date | None = None,
        listed: Listing | None = None,
        left_out: list[str] | None = None,
    ) -> list[ModelSpec]:
        """Turn the `models=` argument into a ladder: None → default; names → specs.

        A comma-separated string is a ladder too ("gemini-3.8-flash,gemini-2.5-flash-lite").
        `listed` (the endpoint's own model list, when it could be read) decides first which
        names are valid (see `named`); ModelSpecs are taken as they are. In a ladder of several,
        a catalogue model the endpoint no longer lists (retired) is left out before any call,
        and `left_out` (when given) gets a sentence saying so; alone, or when every model of the
        ladder is left out, it is an error.
        """
        if models is None:
            ladder = self.ladder(today=today, listed=listed)
            if not ladder:
                raise ConfigurationError(self._no_default_ladder(today or catalogue_day(), listed))
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
        if not models:
            raise ConfigurationError("models= is empty; name at least one model.")
        ladder = []
        gone: list[tuple[str, ConfigurationError]] = []
        for model in models:
            try:
                ladder.append(model if isinstance(model, ModelSpec) else self.named(model, listed))
            except UnknownModelError:
                raise
            except ConfigurationError as exc:  # a catalogue model the endpoint does not list
                gone.append((str(model), exc))
        if not ladder:
            raise gone[0][1]
        if left_out is not None:
            left_out += [
                f"{name}: not in the endpoint's model list (retired, or not available to this "
                "key): left out of the ladder before any call"
                for name, _ in gone
            ]
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

    def named(self, name: str, listed: Listing | None = None) -> ModelSpec:
        """The spec for a model named explicitly. The endpoint's list, when known, decides
        first: a name it lists is valid (a name the catalogue does not know gets careful
        starting limits and an unknown price); a catalogue model it does not list is retired
        or not available to the key; a name neither knows is unknown (with "did you mean").
        Without the list, the catalogue alone decides."""
        short = name.removeprefix("models/")
        if listed is None:
            return self.get(name)
        if short in listed:
            return self._specs.get(short) or self._listed_spec(listed[short])
        close = _close(short, list(listed))
        if short in self._specs:
            known = self._specs[short].status or "in the catalogue"
            hint = (
                f"Did you mean {_either(close)}?"
                if close
                else f"It lists {', '.join(sorted(listed)[:10]) or 'no generation model'}."
            )
            raise ConfigurationError(
                f"Model {short!r} is not in the endpoint's model list: it is retired or not "
                f"available to this API key (catalogue: {known}), so nothing was sent. {hint}"
            )
        raise UnknownModelError(name, sorted(set(listed) | set(self._specs)), close=close)

    def _listed_spec(self, listed: ListedModel) -> ModelSpec:
        return ModelSpec(
            listed.name,
            input_token_limit=listed.input_token_limit or None,
            output_token_limit=listed.output_token_limit or None,
            minute_s=self.minute_s,
            day_s=self.day_s,
            status=LISTED_STATUS,
            discover=True,
            rpm=LISTED_RPM,
            tpm=LISTED_TPM,
        )

    def _no_default_ladder(self, today: date, listed: Listing | None) -> str:
        left_out = [
            f"{s.name} ({'shut down ' + str(s.shutdown) if s.retired_on(today) else 'not listed'})"
            for s in self._specs.values()
            if s.priority is not None
            and s.usable
            and (s.retired_on(today) or (listed is not None and s.name not in listed))
        ]
        if left_out:
            return (
                f"No model of the default ladder is available: {', '.join(left_out)}. "
                "Pass models=[...] with models the endpoint lists, or update the catalogue "
                f"({ENV_CATALOGUE})."
            )
        return "The catalogue has no usable model with a priority; pass models=[...]."

    def with_windows(self, minute_s: float, day_s: float) -> ModelCatalogue:
        """The whole catalogue with compressed quota windows (for demos and tests)."""
        return ModelCatalogue(
            (s.with_windows(minute_s, day_s) for s in self),
            as_of=self.as_of,
            tier=self.tier,
            minute_s=minute_s,
            day_s=day_s,
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, tier: str | None = None) -> ModelCatalogue:
        """Build from parsed TOML/JSON: `{as_of, default_tier, models: {name: {...}}}`."""
        chosen = tier or os.environ.get(ENV_TIER) or str(data.get("default_tier", "free"))
        models = _models_table(data)
        specs = []
        for name, entry in models.items():
            entry = dict(_entry(name, entry))
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
        return cls.from_mapping(read_catalogue(path), tier=tier)


def _models_table(data: Mapping[str, Any]) -> Mapping[str, Any]:
    models = data.get("models")
    if not isinstance(models, Mapping) or not models:
        raise ConfigurationError("A catalogue needs a non-empty [models] table.")
    return models


def _entry(name: str, entry: object) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise ConfigurationError(
            f"Catalogue model {name!r} must be a table of fields, not {entry!r}."
        )
    return entry


def _close(name: str, known: Sequence[str]) -> list[str]:
    """The known names closest to a misspelt one (difflib), best first."""
    return difflib.get_close_matches(name, known, n=3, cutoff=0.6)


def _either(names: Sequence[str]) -> str:
    return " or ".join(repr(n) for n in names)


def read_catalogue(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """A TOML or JSON catalogue file, parsed (not yet checked field by field)."""
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
    return data


def merged_catalogue(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` (a user's catalogue) added over `base` (the bundled one), before a tier is chosen.

    Its top-level fields (as_of, default_tier) win. Its models join the base's; a model in both
    is merged field by field, `limits` tier by tier and limit by limit, and a flat `rpm`, `tpm`
    or `rpd` replaces that limit in every tier of the base. An entry that states a limit is
    trusted (`discover = false`) unless it says `discover = true`; one that states none keeps
    the base's guesses as guesses.
    """
    models = {name: dict(entry) for name, entry in _models_table(base).items()}
    for name, entry in _models_table(extra).items():
        mine = dict(_entry(name, entry))
        if _LIMITS & set(mine) or "limits" in mine:
            mine.setdefault("discover", False)
        short = name.removeprefix("models/")
        models[short] = _merged_entry(models.get(short, {}), mine)
    return {**base, **extra, "models": models}


def _merged_entry(base: Mapping[str, Any], mine: Mapping[str, Any]) -> dict[str, Any]:
    entry = {**base, **mine}
    theirs, ours = base.get("limits"), mine.get("limits")
    if not isinstance(theirs, Mapping) or not all(isinstance(t, Mapping) for t in theirs.values()):
        return entry  # nothing to merge into (or a malformed base: from_mapping says so)
    flat = _LIMITS & set(mine)
    limits = {
        tier: {k: v for k, v in figures.items() if k not in flat}
        for tier, figures in theirs.items()
    }
    if isinstance(ours, Mapping):
        for tier, figures in ours.items():
            limits[tier] = (
                {**limits.get(tier, {}), **figures} if isinstance(figures, Mapping) else figures
            )
    entry["limits"] = limits
    return entry


def default_catalogue(tier: str | None = None) -> ModelCatalogue:
    """The bundled catalogue for `tier`, with the file named by SCRIPTGEN_CATALOGUE added to and
    over it (`merged_catalogue`). The bundled limits are guesses (Google no longer publishes
    them): `discover=True`, raised by the engine while the service allows more."""
    text = resources.files(__package__).joinpath("catalogue.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    for entry in data["models"].values():
        entry["discover"] = True
    override = os.environ.get(ENV_CATALOGUE)
    if override:
        data = merged_catalogue(data, read_catalogue(override))
    return ModelCatalogue.from_mapping(data, tier=tier)


def short_of_output(max_output_tokens: int, models: Sequence[ModelSpec]) -> list[ModelSpec]:
    """The models of `models` whose known output limit is below `max_output_tokens`, the
    lowest limit first; empty when every model can give that many (or does not say: the
    service then decides). The service refuses a request asking more of a model (400), so it
    is said up front."""
    short = [
        spec
        for spec in models
        if spec.output_token_limit is not None and max_output_tokens > spec.output_token_limit
    ]
    return sorted(short, key=lambda spec: spec.output_token_limit or 0)


def output_cap_words(max_output_tokens: int, models: Sequence[ModelSpec], flag: str) -> str | None:
    """Why `flag`=`max_output_tokens` cannot be sent to `models`, and what to give instead;
    None when it can. Said the same from Python (`max_output_tokens`) and the commands
    (`--max-tokens`)."""
    short = short_of_output(max_output_tokens, models)
    if not short:
        return None
    limit = short[0].output_token_limit or 0
    names = ", ".join(spec.name for spec in short)
    other = f", or leave {names} out of the models" if len(short) < len(models) else ""
    return (
        f"{flag}={max_output_tokens} is more than {short[0].name} can give (at most "
        f"{limit:,} output tokens), so the service would refuse it: give {flag} {limit} or "
        f"less{other}."
    )


def ladder_notices(ladder: Sequence[ModelSpec], today: date | None = None) -> list[str]:
    """What a user should know about a ladder before it runs: models Google has retired by
    `today` (named anyway: they may answer 404) and models whose price is unknown."""
    today = today or catalogue_day()
    notices = []
    for spec in ladder:
        if spec.retired_on(today):
            notices.append(
                f"{spec.name}: Google shut it down on {spec.shutdown} (catalogue); "
                "its requests may fail with 404 NOT_FOUND"
            )
        if not spec.priced:
            notices.append(
                f"{spec.name}: price unknown, so its cost shows as unknown (not $0); give a "
                "ModelSpec with input_usd_per_1m and output_usd_per_1m to price it"
            )
    return notices


def seed_models(*, minute_s: float = 60.0, day_s: float = 86_400.0) -> list[ModelSpec]:
    """The seed's three models with the RPM limits its table uses, for comparisons on the
    emulator (gemini-2.5-pro 2, gemini-2.5-flash 10, gemini-2.0-flash-lite 30 a minute).

    All three are retired on Google (gemini-2.5-pro and gemini-2.5-flash shut down on
    2026-12-01, gemini-2.0-flash-lite earlier): against Google they answer 404. Each spec's
    `status` says so, and they keep their shutdown dates, so a batch that runs them says so too.
    """
    catalogue = default_catalogue(tier="free")
    seed_rpm = {"gemini-2.5-pro": 2, "gemini-2.5-flash": 10, "gemini-2.0-flash-lite": 30}
    specs = []
    for i, (name, rpm) in enumerate(seed_rpm.items()):
        spec = catalogue.get(name)
        status = (
            f"retired on Google (shut down {spec.shutdown}); the seed's model, for "
            "comparisons on the emulator"
        )
        specs.append(
            replace(
                spec,
                priority=i + 1,
                rpm=rpm,
                tpm=250_000,
                rpd=None,
                minute_s=minute_s,
                day_s=day_s,
                status=status,
                discover=False,  # the seed's table states these limits: trusted, not probed
            )
        )
    return specs
