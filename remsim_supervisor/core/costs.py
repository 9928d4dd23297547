"""What each recovery rung is expected to take, per modem model: defaults, overrides, learning.

Pure data and arithmetic; the recovery planner (:mod:`remsim_supervisor.core.planner`)
asks :class:`CostModel` for every rung it weighs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

__all__ = ["FALLBACK_MODEL", "CostModel"]

#: The model whose costs stand in for any model the defaults do not list
#: (also "auto": a modem not identified yet).
FALLBACK_MODEL = "generic"


def _frozen(mapping: Mapping[tuple[str, str], float]) -> Mapping[tuple[str, str], float]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class CostModel:
    """Expected duration of each rung per modem model, learning from recoveries.

    ``defaults`` maps a model key to its rung costs (rung -> seconds); a model
    it does not list gets the :data:`FALLBACK_MODEL` row. ``overrides``
    replace defaults: keys are ``(model, rung)``, with model
    ``"*"`` for every model (a model-specific override wins). ``learned``
    holds the moving averages; :meth:`observe` returns a new model with one
    more observation folded in (``alpha`` weight), kept within
    ``[low, high]`` times the default or override, so one freak recovery
    cannot make a power cycle look free or a soft reset look hopeless.
    """

    defaults: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    overrides: Mapping[tuple[str, str], float] = field(default_factory=dict)
    learned: Mapping[tuple[str, str], float] = field(default_factory=dict)
    alpha: float = 0.3
    low: float = 0.25
    high: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], not {self.alpha}")
        if not 0.0 < self.low <= 1.0 <= self.high:
            raise ValueError(f"bounds must satisfy 0 < low <= 1 <= high, not "
                             f"{self.low}, {self.high}")
        for (model, rung), seconds in self.overrides.items():
            if not (math.isfinite(seconds) and seconds > 0):
                raise ValueError(f"cost of {model}/{rung} must be a positive number of "
                                 f"seconds, not {seconds!r}")
        object.__setattr__(self, "defaults", MappingProxyType(
            {k.strip().lower(): MappingProxyType(dict(v)) for k, v in self.defaults.items()}))
        overrides = {(m if m == "*" else self.model_key(m), r): float(s)
                     for (m, r), s in self.overrides.items()}
        object.__setattr__(self, "overrides", _frozen(overrides))
        object.__setattr__(self, "learned", _frozen(self.learned))

    def model_key(self, model: str) -> str:
        """``model`` as the defaults know it: its key, else :data:`FALLBACK_MODEL`."""
        key = model.strip().lower()
        return key if key in self.defaults else FALLBACK_MODEL

    def row(self, model: str) -> Mapping[str, float]:
        """The default rung costs of ``model`` (empty when nothing is known)."""
        return self.defaults.get(self.model_key(model), MappingProxyType({}))

    def base(self, model: str, rung: str, default: float | None = None) -> float:
        """The configured cost (override, else default for the model, else ``default``)."""
        key = self.model_key(model)
        for probe in ((key, rung), ("*", rung)):
            if probe in self.overrides:
                return self.overrides[probe]
        known = self.row(model).get(rung)
        if known is not None:
            return known
        if default is not None:
            return default
        raise KeyError(f"no cost known for rung {rung!r}")

    def expected(self, model: str, rung: str, default: float | None = None) -> float:
        """What ``rung`` is expected to take on ``model`` now (learned, else base)."""
        learned = self.learned.get((self.model_key(model), rung))
        return learned if learned is not None else self.base(model, rung, default)

    def observe(self, model: str, rung: str, duration_s: float) -> CostModel:
        """Fold in one successful recovery's duration; returns the updated model."""
        if not (math.isfinite(duration_s) and duration_s >= 0):
            return self
        try:
            base = self.base(model, rung)
        except KeyError:
            return self  # a rung this model knows no cost for: nothing to bound it by
        previous = self.expected(model, rung)
        estimate = previous + self.alpha * (duration_s - previous)
        estimate = min(max(estimate, base * self.low), base * self.high)
        learned = dict(self.learned)
        learned[(self.model_key(model), rung)] = estimate
        return replace(self, learned=learned)
