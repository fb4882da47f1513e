"""Problems: an input distribution on a domain, a target, the squared loss.

The input distribution has one of three shapes:

* ``box``: uniform on the box ``[low, high]^d``;
* ``ball``: uniform on the Euclidean ball of radius ``radius`` around ``center``;
* ``gaussian``: normal ``N(center, radius^2 I)``, whose support is all of R^d.

Training is data-driven: every step draws a fresh mini-batch from it.  The true risk
``E[(N(X) - f(X))^2]`` is estimated

* in dimension 1 on a box or a ball (an interval) by the midpoint rule on
  ``evaluation_size`` equal cells of the interval (exact for the mean of a function
  that is linear on each cell, and of error ``O(1 / n^2)`` for a piecewise linear
  network against a smooth target);
* otherwise by the mean over ``evaluation_size`` inputs drawn once, with a fixed key,
  from the input distribution.

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
from relutrap.domains import Ball, Box, Domain, FiniteSet, Gaussian
from relutrap.networks import Architecture, Params, hidden_widths, realization

TARGETS = ("teacher", "square", "sin", "constant")
SHAPES = ("box", "ball", "gaussian")


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
            raise ValueError(
                f"unknown target {self.kind!r}; allowed: {', '.join(TARGETS)}"
            )


@dataclass(frozen=True)
class Problem:
    """An input law, a target and the squared loss; or, with ``data``, a finite
    training set (then ``dimension`` is its number of input columns and the input
    law and target are not used).

    Attributes:
        shape: ``box`` (uniform on ``[low, high]^dimension``), ``ball`` (uniform on
            the ball of radius ``radius`` around ``center``) or ``gaussian``
            (``N(center, radius^2 I)``).
        center: the center of a ball or Gaussian, one coordinate (repeated in every
            dimension) or ``dimension`` of them; unused for a box.
    """

    dimension: int = 1
    low: float = 0.0
    high: float = 1.0
    target: Target = Target()
    evaluation_size: int = 1024
    data: DataSource | None = None
    shape: str = "box"
    center: tuple[float, ...] = (0.0,)
    radius: float = 1.0

    def __post_init__(self):
        if self.dimension < 1:
            raise ValueError("dimension must be at least 1")
        if not self.low < self.high:
            raise ValueError(
                f"empty domain: low {self.low} is not below high {self.high}"
            )
        if self.evaluation_size < 2:
            raise ValueError("evaluation_size must be at least 2")
        if self.shape not in SHAPES:
            raise ValueError(
                f"unknown shape {self.shape!r}; allowed: {', '.join(SHAPES)}"
            )
        if len(self.center) not in (1, self.dimension):
            raise ValueError(
                f"center has {len(self.center)} coordinates; give 1 or {self.dimension}"
            )
        if not self.radius > 0:
            raise ValueError(f"radius must be positive, got {self.radius}")

    def center_vector(self) -> tuple[float, ...]:
        """The center with ``dimension`` coordinates."""
        if len(self.center) == 1:
            return tuple(float(self.center[0]) for _ in range(self.dimension))
        return tuple(float(value) for value in self.center)

    def domain(self) -> Domain:
        """The set the input law lives on (see :mod:`relutrap.domains`): for a data
        set, the finite set of its training inputs."""
        if self.data is not None:
            return FiniteSet.of(load(self.data).train_inputs)
        if self.shape == "ball":
            return Ball(self.center_vector(), float(self.radius))
        if self.shape == "gaussian":
            return Gaussian(self.center_vector(), float(self.radius))
        return Box(float(self.low), float(self.high), self.dimension)

    def interval(self) -> tuple[float, float]:
        """The range ``[lo, hi]`` of the first coordinate: ``[low, high]`` for a box,
        ``center +- radius`` for a ball (in dimension 1, the ball itself) and for
        Gaussian inputs (one standard deviation)."""
        if self.shape == "box":
            return self.low, self.high
        center = self.center_vector()[0]
        return center - self.radius, center + self.radius

    def teacher_width(self, arch: Architecture) -> int:
        """The width of the teacher of a student with architecture ``arch``."""
        return self.target.width or arch[1]

    def uses_grid(self) -> bool:
        """Whether the risk is estimated by the midpoint rule on an interval."""
        return self.data is None and self.dimension == 1 and self.shape != "gaussian"

    def risk_method(self) -> str:
        """How the true risk is estimated, in words."""
        if self.data is not None:
            size = len(load(self.data).train_targets)
            return (
                f"empirical risk on the {size} training examples of {self.data.name()}"
            )
        if self.uses_grid():
            low, high = self.interval()
            return f"midpoint rule on {self.evaluation_size} cells of [{low}, {high}]"
        return f"mean over {self.evaluation_size} fixed inputs drawn from the input law"


def sample_inputs(key: jax.Array, problem: Problem, size: int, dtype) -> jax.Array:
    """``size`` inputs drawn from the input law, shape ``(size, d)``.

    A uniform point of the ball is ``c + r U^(1/d) g / |g|``, ``g`` standard normal
    and ``U`` uniform on (0, 1), independent.  A box's draw is
    ``jax.random.uniform(key, (size, d), dtype, low, high)``, computed by
    :func:`relutrap.threefry.uniform`.
    """
    d = problem.dimension
    if problem.shape == "box":
        return threefry.uniform(key, (size, d), dtype, problem.low, problem.high)
    center = jnp.asarray(problem.center_vector(), dtype)
    direction_key, radius_key = jax.random.split(key)
    normal = jax.random.normal(direction_key, (size, d), dtype)
    if problem.shape == "gaussian":
        return center + problem.radius * normal
    direction = normal / jnp.linalg.norm(normal, axis=1, keepdims=True)
    length = jax.random.uniform(radius_key, (size, 1), dtype) ** (1.0 / d)
    return center + problem.radius * length * direction


def teacher_params(problem: Problem, width: int, dtype=jnp.float64) -> Params:
    """A shallow teacher network ``(d, width, 1)`` whose optimal risk is reachable.

    Neuron j computes ``relu(u_j . (x - p_j))`` with a unit direction ``u_j`` and a
    point ``p_j`` inside the box, so its kink hyperplane crosses the domain.  In
    dimension 1, ``u_j = +-1`` and the kinks are stratified,
    ``p_j = low + (high - low) (j + U_j) / width`` with ``U_j`` uniform on
    ``(0.1, 0.9)`` and ``[low, high]`` the problem's :meth:`Problem.interval`, hence
    pairwise distinct; in higher dimension the ``u_j`` are uniform on the sphere and
    the ``p_j`` inside the domain (see :func:`_teacher_points`), so the hyperplanes
    are distinct with probability one.  The outgoing weights are
    ``+-U(0.5, 1.5)``, never zero, and the output bias is ``U(-0.5, 0.5)``.
    """
    rng = np.random.default_rng([problem.target.seed, width, problem.dimension])
    d = problem.dimension
    if d == 1:
        low, high = problem.interval()
        directions = rng.choice([-1.0, 1.0], size=(1, width))
        offsets = (np.arange(width) + rng.uniform(0.1, 0.9, width)) / width
        points = (low + (high - low) * offsets)[None, :]
    else:
        directions = rng.standard_normal((d, width))
        directions /= np.linalg.norm(directions, axis=0, keepdims=True)
        points = _teacher_points(problem, rng, width)
    biases = -np.sum(directions * points, axis=0)
    outgoing = rng.choice([-1.0, 1.0], size=(width, 1)) * rng.uniform(
        0.5, 1.5, (width, 1)
    )
    output_bias = rng.uniform(-0.5, 0.5, 1)
    return (
        (jnp.asarray(directions, dtype), jnp.asarray(biases, dtype)),
        (jnp.asarray(outgoing, dtype), jnp.asarray(output_bias, dtype)),
    )


def _teacher_points(problem: Problem, rng, width: int) -> np.ndarray:
    """Points ``(d, width)`` inside the domain: uniform on the middle 80% of a box;
    for a ball or Gaussian, ``c + 0.8 r u / sqrt(d)`` with ``u`` uniform on
    ``[-1, 1]^d`` (inside the ball, within ``0.8 r`` of the center)."""
    d = problem.dimension
    if problem.shape == "box":
        span = problem.high - problem.low
        return problem.low + span * rng.uniform(0.1, 0.9, (d, width))
    center = np.asarray(problem.center_vector())[:, None]
    spread = 0.8 * problem.radius / np.sqrt(d)
    return center + spread * rng.uniform(-1.0, 1.0, (d, width))


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
    if problem.uses_grid():
        low, high = problem.interval()
        midpoints = low + (high - low) * (np.arange(n) + 0.5) / n
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
