"""Problems: an input distribution on a domain, a target, the squared loss.

The input distribution is uniform on the box ``[low, high]^d``.  Training is
data-driven: every step draws a fresh mini-batch from it.  The true risk
``E[(N(X) - f(X))^2]`` is estimated

* in dimension 1 by the midpoint rule on ``evaluation_size`` equal cells of the
  interval (exact for the mean of a function that is linear on each cell, and of
  error ``O(1 / n^2)`` for a piecewise linear network against a smooth target);
* in higher dimension by the mean over ``evaluation_size`` inputs drawn once, with a
  fixed key, from the input distribution.

Targets:

* ``square``: ``f(x) = sum_i x_i^2``;
* ``sin``: ``f(x) = sum_i sin(2 pi frequency x_i)``;
* ``constant``: ``f(x) = value``;
* ``teacher``: a shallow ReLU network of width ``m`` (see :func:`teacher_params`).

A problem may instead be a data set (``data``, see :mod:`relutrap.datasets`): its
inputs and labels are a fixed training set, the risk is the empirical risk on all of
it, and the optimal risk is not known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from relutrap import threefry
from relutrap.datasets import DataSource, best_constant_is_optimal, load
from relutrap.networks import Architecture, Params, hidden_widths, realization

TARGETS = ("teacher", "square", "sin", "constant")


@dataclass(frozen=True)
class Target:
    """What the network should learn.

    Attributes:
        kind: one of :data:`TARGETS`.
        width: number of hidden neurons of a ``teacher``; 0 means the student's
            first hidden width.
        seed: the seed a ``teacher`` is drawn from.
        value: the value of a ``constant`` target.
        frequency: cycles per unit length of a ``sin`` target.
    """

    kind: str = "teacher"
    width: int = 0
    seed: int = 0
    value: float = 1.0
    frequency: float = 1.0

    def __post_init__(self):
        if self.kind not in TARGETS:
            raise ValueError(f"unknown target {self.kind!r}; allowed: {TARGETS}")


@dataclass(frozen=True)
class Problem:
    """Inputs uniform on ``[low, high]^dimension``, a target and the squared loss;
    or, with ``data``, a finite training set (then ``dimension`` is its number of
    input columns and the box and target are not used)."""

    dimension: int = 1
    low: float = 0.0
    high: float = 1.0
    target: Target = Target()
    evaluation_size: int = 1024
    data: DataSource | None = None

    def __post_init__(self):
        if self.dimension < 1:
            raise ValueError("dimension must be at least 1")
        if not self.low < self.high:
            raise ValueError(
                f"empty domain: low {self.low} is not below high {self.high}"
            )
        if self.evaluation_size < 2:
            raise ValueError("evaluation_size must be at least 2")

    def teacher_width(self, arch: Architecture) -> int:
        """The width of the teacher of a student with architecture ``arch``."""
        return self.target.width or arch[1]

    def risk_method(self) -> str:
        """How the true risk is estimated, in words."""
        if self.data is not None:
            size = len(load(self.data).train_targets)
            return (
                f"empirical risk on the {size} training examples of {self.data.name()}"
            )
        if self.dimension == 1:
            cells = f"{self.evaluation_size} cells of [{self.low}, {self.high}]"
            return f"midpoint rule on {cells}"
        return f"mean over {self.evaluation_size} fixed inputs drawn from the input law"


def sample_inputs(key: jax.Array, problem: Problem, size: int, dtype) -> jax.Array:
    """``size`` inputs drawn from the uniform law on the box, shape ``(size, d)``.

    The draw is ``jax.random.uniform(key, (size, d), dtype, low, high)``, computed by
    :func:`relutrap.threefry.uniform`.
    """
    return threefry.uniform(
        key, (size, problem.dimension), dtype, problem.low, problem.high
    )


def teacher_params(problem: Problem, width: int, dtype=jnp.float64) -> Params:
    """A shallow teacher network ``(d, width, 1)`` whose optimal risk is reachable.

    Neuron j computes ``relu(u_j . (x - p_j))`` with a unit direction ``u_j`` and a
    point ``p_j`` inside the box, so its kink hyperplane crosses the domain.  In
    dimension 1, ``u_j = +-1`` and the kinks are stratified,
    ``p_j = low + (high - low) (j + U_j) / width`` with ``U_j`` uniform on
    ``(0.1, 0.9)``, hence pairwise distinct; in higher dimension the ``u_j`` are
    uniform on the sphere and the ``p_j`` uniform on the middle 80% of the box, so the
    hyperplanes are distinct with probability one.  The outgoing weights are
    ``+-U(0.5, 1.5)``, never zero, and the output bias is ``U(-0.5, 0.5)``.
    """
    rng = np.random.default_rng([problem.target.seed, width, problem.dimension])
    d = problem.dimension
    span = problem.high - problem.low
    if d == 1:
        directions = rng.choice([-1.0, 1.0], size=(1, width))
        offsets = (np.arange(width) + rng.uniform(0.1, 0.9, width)) / width
        points = (problem.low + span * offsets)[None, :]
    else:
        directions = rng.standard_normal((d, width))
        directions /= np.linalg.norm(directions, axis=0, keepdims=True)
        points = problem.low + span * rng.uniform(0.1, 0.9, (d, width))
    biases = -np.sum(directions * points, axis=0)
    outgoing = rng.choice([-1.0, 1.0], size=(width, 1)) * rng.uniform(
        0.5, 1.5, (width, 1)
    )
    output_bias = rng.uniform(-0.5, 0.5, 1)
    return (
        (jnp.asarray(directions, dtype), jnp.asarray(biases, dtype)),
        (jnp.asarray(outgoing, dtype), jnp.asarray(output_bias, dtype)),
    )


def target_values(problem: Problem, arch: Architecture, inputs: jax.Array) -> jax.Array:
    """The target evaluated at ``inputs`` of shape ``(n, d)``; shape ``(n,)``."""
    target = problem.target
    match target.kind:
        case "square":
            return jnp.sum(inputs**2, axis=1)
        case "sin":
            return jnp.sum(jnp.sin(2 * math.pi * target.frequency * inputs), axis=1)
        case "constant":
            return jnp.full(inputs.shape[:1], target.value, inputs.dtype)
        case _:
            teacher = teacher_params(problem, problem.teacher_width(arch), inputs.dtype)
            return realization(teacher, inputs)


def evaluation_inputs(problem: Problem, dtype=jnp.float32) -> jax.Array:
    """The fixed inputs on which the true risk and observed inactivity are measured;
    the whole training set of a data set."""
    if problem.data is not None:
        return jnp.asarray(load(problem.data).train_inputs, dtype)
    n = problem.evaluation_size
    if problem.dimension == 1:
        span = problem.high - problem.low
        midpoints = problem.low + span * (np.arange(n) + 0.5) / n
        return jnp.asarray(midpoints[:, None], dtype)
    key = jax.random.key(2**31 - 1)
    return sample_inputs(key, problem, n, dtype)


def evaluation_targets(problem: Problem, arch: Architecture, dtype) -> jax.Array:
    """The target at :func:`evaluation_inputs`, shape ``(n,)``: the training labels
    of a data set."""
    if problem.data is not None:
        return jnp.asarray(load(problem.data).train_targets, dtype)
    return target_values(problem, arch, evaluation_inputs(problem, dtype)).astype(dtype)


def optimal_risk(problem: Problem, arch: Architecture) -> float | None:
    """The infimum of the risk over all parameters of ``arch``, where known exactly.

    A constant target is realized by the output bias alone.  A teacher of width m is
    realized by any student whose hidden widths are all at least m: the first layer
    copies the teacher's neurons, deeper layers pass their non-negative outputs on
    unchanged (``relu(h) = h`` for ``h >= 0``), and the output layer applies the
    teacher's outgoing weights.  Otherwise, and for every data set, the optimal risk
    is not known (``None``).
    """
    if problem.data is not None:
        return None
    target = problem.target
    if target.kind == "constant":
        return 0.0
    if target.kind == "teacher" and min(hidden_widths(arch)) >= problem.teacher_width(
        arch
    ):
        return 0.0
    return None


def is_constant(problem: Problem) -> bool:
    """Whether the target is constant on the domain; for a data set, whether the
    best constant is optimal on the training set (equal mean label at every input)."""
    if problem.data is not None:
        return best_constant_is_optimal(load(problem.data))
    return problem.target.kind == "constant"
