"""Input domains and their support functions.

A first-layer neuron ``x -> w . x + b`` is inactive on a set ``K`` iff
``b + h_K(w) <= 0``, where ``h_K(w) = sup_{x in K} w . x`` is the *support function*
of ``K`` (the supremum of a linear function over ``K``; over a compact convex set it is
attained, so the test is exact).  The support functions used here:

* :class:`Box`, the cube ``[low, high]^d``: ``h(w) = sum_i max(w_i low, w_i high)``;
* :class:`Ball`, ``{x : |x - c| <= r}``: ``h(w) = c . w + r |w|``;
* :class:`FiniteSet`, the points ``x_1, ..., x_n``: ``h(w) = max_i w . x_i``;
* :class:`Gaussian`, the support of ``N(c, s^2 I)``, all of R^d: ``h(w) = +inf``
  unless ``w = 0``.

A finite set is not convex, but a neuron is inactive on the points iff it is
inactive on their convex hull, whose support function is the same maximum.  Gaussian
inputs have unbounded support: no neuron with a non-zero weight vector is inactive on
it, so the first-layer inactivity probability is 0 for every continuous weight law;
inactivity on a finite sample drawn from it is the :class:`FiniteSet` case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """The cube ``[low, high]^dimension``."""

    low: float
    high: float
    dimension: int = 1

    def __post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"empty box: low {self.low} is not below high {self.high}")
        if self.dimension < 1:
            raise ValueError("dimension must be at least 1")

    def support(self, weights: np.ndarray) -> np.ndarray:
        """``h(w)`` for weights of shape ``(..., d)``; shape ``(...)``."""
        return np.sum(np.maximum(weights * self.low, weights * self.high), axis=-1)

    @property
    def symmetric(self) -> bool:
        return self.low == -self.high

    def describe(self) -> str:
        power = "" if self.dimension == 1 else f"^{self.dimension}"
        return f"box [{self.low:g}, {self.high:g}]{power}"


@dataclass(frozen=True)
class Ball:
    """The closed Euclidean ball of radius ``radius`` around ``center`` (length d)."""

    center: tuple[float, ...]
    radius: float

    def __post_init__(self):
        if not self.radius > 0:
            raise ValueError(f"radius must be positive, got {self.radius}")
        if len(self.center) < 1:
            raise ValueError("center must have at least one coordinate")

    @property
    def dimension(self) -> int:
        return len(self.center)

    def support(self, weights: np.ndarray) -> np.ndarray:
        """``c . w + r |w|`` for weights of shape ``(..., d)``; shape ``(...)``."""
        center = np.asarray(self.center)
        return weights @ center + self.radius * np.linalg.norm(weights, axis=-1)

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """The corners ``c - r`` and ``c + r`` of the smallest box holding the ball."""
        center = np.asarray(self.center, dtype=float)
        return center - self.radius, center + self.radius

    def describe(self) -> str:
        center = ", ".join(f"{value:g}" for value in self.center)
        return f"ball of radius {self.radius:g} around ({center})"


@dataclass(frozen=True)
class FiniteSet:
    """The finite set of the rows of ``points`` (a tuple of ``n`` points in R^d)."""

    points: tuple[tuple[float, ...], ...]

    def __post_init__(self):
        if len(self.points) < 1:
            raise ValueError("a finite set needs at least one point")
        if len({len(point) for point in self.points}) != 1:
            raise ValueError("every point must have the same dimension")

    @classmethod
    def of(cls, points) -> FiniteSet:
        """A finite set from an array-like of shape ``(n, d)``."""
        array = np.asarray(points, dtype=float)
        if array.ndim != 2:
            raise ValueError(f"points must have shape (n, d), got {array.shape}")
        return cls(tuple(tuple(float(v) for v in row) for row in array))

    @property
    def dimension(self) -> int:
        return len(self.points[0])

    def array(self) -> np.ndarray:
        return np.asarray(self.points, dtype=float)

    def support(self, weights: np.ndarray) -> np.ndarray:
        """``max_i w . x_i`` for weights of shape ``(..., d)``; shape ``(...)``."""
        return np.max(weights @ self.array().T, axis=-1)

    def describe(self) -> str:
        count = len(self.points)
        return f"{count} point{'' if count == 1 else 's'} in R^{self.dimension}"


@dataclass(frozen=True)
class Gaussian:
    """The support of the normal law ``N(center, scale^2 I)``: all of R^d."""

    center: tuple[float, ...]
    scale: float

    def __post_init__(self):
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")

    @property
    def dimension(self) -> int:
        return len(self.center)

    def support(self, weights: np.ndarray) -> np.ndarray:
        """``+inf`` for every non-zero weight vector and 0 for ``w = 0``."""
        nonzero = np.any(weights != 0, axis=-1)
        return np.where(nonzero, np.inf, 0.0)

    def describe(self) -> str:
        center = ", ".join(f"{value:g}" for value in self.center)
        return f"Gaussian inputs N(({center}), {self.scale:g}^2 I) (unbounded support)"


Domain = Box | Ball | FiniteSet | Gaussian
