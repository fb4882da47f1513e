"""What the theory says before any training: inactivity probabilities and bounds.

A first-layer neuron ``x -> w . x + b`` is inactive on the box ``[A, B]^d`` iff
``b + sum_i max(w_i A, w_i B) <= 0`` (see :mod:`relutrap.inactivity`).  Its probability
``p`` under an initialization scheme is computed here

* exactly in dimension 1 for normal and uniform laws (with any of the bias rules);
* by Monte Carlo with a stated standard error otherwise.

The neurons of the first layer are independent, so the probability that at least one
of the ``l1`` neurons is inactive is ``1 - (1 - p)^l1``: the lower bound on the
probability of non-convergence of Do, Hannibal and Jentzen (2024, arXiv:2410.10533)
for a shallow student of a teacher of the same width.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from relutrap.init import Initialization, Law
from relutrap.networks import Architecture

MONTE_CARLO_SAMPLES = 2_000_000


@dataclass(frozen=True)
class Probability:
    """A probability with how it was obtained.

    Attributes:
        value: the probability.
        method: ``exact`` or ``monte carlo``.
        standard_error: 0 for exact values.
    """

    value: float
    method: str
    standard_error: float = 0.0


def _normal_pair_both_nonpositive(var1, var2, covariance) -> float:
    """P(Y1 <= 0, Y2 <= 0) for a centred normal pair (Sheppard's formula)."""
    if var1 == 0 or var2 == 0:
        # A degenerate coordinate is identically 0, hence <= 0.
        return 1.0 if var1 == var2 == 0 else 0.5
    correlation = float(np.clip(covariance / math.sqrt(var1 * var2), -1.0, 1.0))
    return 0.25 + math.asin(correlation) / (2 * math.pi)


def _uniform_integral(half_width: float, bias_half_width: float, slope: float) -> float:
    """``int_0^a F(-slope u) du`` for the CDF F of U(-beta, beta)."""
    a, beta = half_width, bias_half_width
    if slope == 0:
        return a / 2
    if slope > 0:
        end = min(a, beta / slope)
        return (beta * end - slope * end**2 / 2) / (2 * beta)
    end = min(a, beta / -slope)
    return (beta * end - slope * end**2 / 2) / (2 * beta) + max(a - end, 0.0)


def _exact_one_dimensional(
    weight: Law, bias: Law, low: float, high: float
) -> float | None:
    """p for ``w x + b`` on ``[low, high]``, or ``None`` where no closed form is coded.

    The neuron is inactive iff ``b + w low <= 0`` and ``b + w high <= 0``.
    """
    if bias.kind == "constant":
        # Each endpoint t asks w t <= -c: an interval of weights.
        c, lo, hi = bias.scale, -math.inf, math.inf
        for t in (low, high):
            if t > 0:
                hi = min(hi, -c / t)
            elif t < 0:
                lo = max(lo, -c / t)
            elif c > 0:
                return 0.0
        return _law_interval(weight, lo, hi)
    if weight.kind == "normal" and bias.kind == "normal":
        var_w, var_b = weight.scale**2, bias.scale**2
        return _normal_pair_both_nonpositive(
            var_b + low**2 * var_w, var_b + high**2 * var_w, var_b + low * high * var_w
        )
    if weight.kind == "uniform" and bias.kind == "uniform":
        # w > 0: inactive iff b <= -w high; w < 0 (u = -w): iff b <= u low.
        a, beta = weight.scale, bias.scale
        return (_uniform_integral(a, beta, high) + _uniform_integral(a, beta, -low)) / (
            2 * a
        )
    return None


def _law_interval(law: Law, lo: float, hi: float) -> float:
    """P(lo <= W <= hi) for a weight law."""
    if lo > hi:
        return 0.0
    if law.kind == "normal":
        return float(norm.cdf(hi, scale=law.scale) - norm.cdf(lo, scale=law.scale))
    if law.kind == "uniform":
        a = law.scale
        return max(0.0, min(hi, a) - max(lo, -a)) / (2 * a)
    return float(lo <= law.scale <= hi)


def _monte_carlo(weight: Law, bias: Law, dimension: int, low: float, high: float):
    rng = np.random.default_rng(20241014)
    n = MONTE_CARLO_SAMPLES

    def draw(law: Law, shape):
        if law.kind == "normal":
            return law.scale * rng.standard_normal(shape)
        if law.kind == "uniform":
            return rng.uniform(-law.scale, law.scale, shape)
        return np.full(shape, law.scale)

    weights = draw(weight, (n, dimension))
    biases = draw(bias, n)
    largest = biases + np.maximum(weights * low, weights * high).sum(axis=1)
    fraction = float(np.mean(largest <= 0))
    return Probability(
        fraction, "monte carlo", math.sqrt(fraction * (1 - fraction) / n)
    )


def _monte_carlo_asymmetric(dimension: int, low: float, high: float) -> Probability:
    """p under the asymmetric scheme by Monte Carlo over neurons drawn by the scheme
    itself (:func:`relutrap.init.asymmetric_layer`), in float64."""
    import jax

    from relutrap.inactivity import first_layer_certified
    from relutrap.init import asymmetric_layer

    n = MONTE_CARLO_SAMPLES
    with jax.enable_x64(True):
        weights, bias = asymmetric_layer(
            jax.random.key(20241014), dimension, n, np.float64
        )
        inactive = first_layer_certified(weights, bias, low, high)
        fraction = float(np.mean(np.asarray(inactive)))
    return Probability(
        fraction, "monte carlo", math.sqrt(fraction * (1 - fraction) / n)
    )


@functools.lru_cache(maxsize=256)
def first_layer_inactivity(
    init: Initialization, arch: Architecture, low: float, high: float
) -> Probability:
    """The probability p that one first-layer neuron is inactive on the box at init."""
    dimension = arch[0]
    if init.is_asymmetric:
        return _monte_carlo_asymmetric(dimension, low, high)
    weight = init.weight_law(arch[0], arch[1])
    bias = init.bias_law(arch[0], arch[1])
    if dimension == 1:
        exact = _exact_one_dimensional(weight, bias, low, high)
        if exact is not None:
            return Probability(exact, "exact")
    return _monte_carlo(weight, bias, dimension, low, high)


def some_first_layer_inactivity(p: Probability, width: int) -> Probability:
    """P(at least one of ``width`` independent first-layer neurons is inactive)."""
    value = 1 - (1 - p.value) ** width
    error = width * (1 - p.value) ** (width - 1) * p.standard_error
    return Probability(value, p.method, error)
