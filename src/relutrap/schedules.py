"""Learning-rate schedules: the factor ``gamma_n / gamma`` at step ``n = 1, 2, ...``.

The book of Jentzen, Kuckuck and von Wurstemberger (2023, arXiv:2310.20360) lets the
learning rate ``gamma_n`` depend on the step.  A schedule here is a pure function
``factor(n, dtype) -> array`` of the step count, evaluated inside the optimizer's
update, so a schedule costs no state and a run stays a function of its identity:

* ``constant``: ``1``;
* ``step``: ``factor^floor((n - 1) / every)``, i.e. the rate is multiplied by
  ``factor`` every ``every`` steps;
* ``inverse_time``: ``1 / (1 + decay n)``;
* ``cosine``: ``final + (1 - final) (1 + cos(pi min(n, N) / N)) / 2`` over the cell's
  N steps, from (nearly) 1 down to ``final`` at step N.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Schedule = Callable[[jax.Array, object], jax.Array]

KINDS = ("constant", "step", "inverse_time", "cosine")

PARAMETERS = {
    "constant": {},
    "step": {"factor": 0.1, "every": 1000},
    "inverse_time": {"decay": 0.001},
    "cosine": {"final": 0.0},
}


def constant() -> None:
    """No schedule: ``gamma_n = gamma``."""
    return None


def step(factor: float = 0.1, every: int = 1000) -> Schedule:
    """``gamma_n = gamma factor^floor((n - 1) / every)``."""

    def schedule(n, dtype):
        return jnp.asarray(factor, dtype) ** ((n - 1) // every).astype(dtype)

    return schedule


def inverse_time(decay: float = 0.001) -> Schedule:
    """``gamma_n = gamma / (1 + decay n)``."""

    def schedule(n, dtype):
        return 1 / (1 + jnp.asarray(decay, dtype) * n.astype(dtype))

    return schedule


def cosine(steps: int, final: float = 0.0) -> Schedule:
    """``gamma_n = gamma (final + (1 - final) (1 + cos(pi min(n, N) / N)) / 2)``."""

    def schedule(n, dtype):
        progress = jnp.minimum(n, steps).astype(dtype) / max(steps, 1)
        wave = (1 + jnp.cos(jnp.asarray(math.pi, dtype) * progress)) / 2
        return jnp.asarray(final, dtype) + jnp.asarray(1 - final, dtype) * wave

    return schedule


def make(kind: str, steps: int, **parameters: float) -> Schedule | None:
    """The schedule ``kind`` with its parameters; ``None`` for a constant rate.

    ``steps`` is the cell's number of steps (used by ``cosine``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown schedule {kind!r}; allowed: {', '.join(KINDS)}")
    unknown = set(parameters) - set(PARAMETERS[kind])
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(sorted(unknown))} of the {kind} "
            f"schedule; allowed: {', '.join(sorted(PARAMETERS[kind])) or 'none'}"
        )
    if kind == "constant":
        return None
    if kind == "step":
        every = parameters.get("every", PARAMETERS["step"]["every"])
        if every != int(every) or every < 1:
            raise ValueError(
                f"step schedule: every must be an integer >= 1, got {every}"
            )
        return step(parameters.get("factor", 0.1), int(every))
    if kind == "inverse_time":
        return inverse_time(**parameters)
    return cosine(steps, **parameters)
