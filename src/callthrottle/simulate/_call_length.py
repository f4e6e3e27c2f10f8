"""How long the simulated calls last: a distribution given as ``KIND:PARAMS``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import InvalidArgument

if TYPE_CHECKING:
    import random

__all__ = ("CallLength",)

_ARITY = {"exp": 1, "lognormal": 2, "fixed": 1, "uniform": 2}  # parameters of each distribution
_CALL_LENGTH_RULE = (
    "exp:MEAN, lognormal:MEAN:SIGMA, fixed:SECONDS or uniform:LOW:HIGH, in seconds > 0 "
    "(e.g. exp:90)"
)


@dataclass(frozen=True)
class CallLength:
    """How long calls last (simulated seconds):

    - ``exp:MEAN``: exponential with that mean (the default, ``exp:90``)
    - ``lognormal:MEAN:SIGMA``: log-normal with that mean, ``SIGMA`` the spread of its log
      (real call lengths are close to this: many short calls, a long tail)
    - ``fixed:SECONDS``: every call the same length
    - ``uniform:LOW:HIGH``: evenly spread between the two
    """

    kind: str
    params: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> CallLength:
        kind, _, rest = text.partition(":")
        arity = _ARITY.get(kind)
        try:
            params = tuple(float(part) for part in rest.split(":")) if rest else ()
        except ValueError:
            params = ()
        if arity is None or len(params) != arity or not all(0 < p < math.inf for p in params):
            raise InvalidArgument("call_length", text, _CALL_LENGTH_RULE)
        if kind == "uniform" and params[0] > params[1]:
            raise InvalidArgument("call_length", text, "uniform:LOW:HIGH with LOW <= HIGH")
        return cls(kind, params)

    @property
    def mean(self) -> float:
        if self.kind == "uniform":
            return (self.params[0] + self.params[1]) / 2
        return self.params[0]

    def sample(self, rng: random.Random) -> float:
        if self.kind == "exp":
            return rng.expovariate(1 / self.params[0])
        if self.kind == "lognormal":
            mean, sigma = self.params
            return rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)
        if self.kind == "uniform":
            return rng.uniform(*self.params)
        return self.params[0]

    def __str__(self) -> str:
        return ":".join([self.kind, *(f"{p:g}" for p in self.params)])
