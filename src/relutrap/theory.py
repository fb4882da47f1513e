"""What the theory says before any training: inactivity probabilities and bounds.

**One first-layer neuron.**  ``x -> w . x + b`` is inactive on a domain ``K`` iff
``b <= -h_K(w)``, ``h_K`` the support function of ``K`` (see :mod:`relutrap.domains`).
The bias is independent of the weights, so it integrates out exactly:

    p = P(b <= -h_K(w)) = E_w[ F_b(-h_K(w)) ],

``F_b`` the distribution function of the bias.  What is left is an integral over the
weights, computed (:func:`neuron_inactivity`)

* exactly (``method = "exact"``)

  - on an interval, for normal and uniform laws and every bias rule;
  - for normal weights and a normal or zero bias on a box ``[a, b]^2``: split the
    weight space into its four orthants; on the orthant of signs ``s`` the support
    function is linear, ``h(w) = c_s . w`` with ``c_s,i = b`` where ``s_i > 0`` and
    ``a`` elsewhere, so each part is the orthant probability
    ``P(-s_1 w_1 <= 0, -s_2 w_2 <= 0, b + c_s . w <= 0)`` of a centred normal
    vector of dimension 3, ``1/8 + (asin r12 + asin r13 + asin r23) / (4 pi)``;
  - for normal weights and a normal or zero bias on at most three points (orthant
    probabilities of dimension at most 3);
  - for uniform weights on a symmetric box ``[-r, r]^d`` with a uniform or constant
    bias (PyTorch's default initialization, He and Glorot uniform laws): there
    ``h(w) = r sum_i |w_i|`` and ``|w_i|`` is uniform on ``(0, alpha)``, so the sum
    follows the Irwin-Hall law and ``E[(beta - r S)^+]`` has a closed form;
  - 0 on the support of Gaussian inputs, which is unbounded: no neuron with a
    non-zero weight vector is inactive on all of R^d (inactivity on a finite sample
    of Gaussian inputs is the finite-set case);

* by orthant probabilities of higher dimension (boxes of dimension 3 and 4 with a
  normal or zero bias, normal weights), by Genz's algorithm as implemented in scipy
  (``method = "orthant (Genz)"``, ``standard_error`` its absolute error tolerance);
* on a ball centred at 0 with normal weights, by one-dimensional quadrature over the
  chi law of ``|w|`` (``"quadrature"``, ``standard_error`` the quadrature's error
  estimate);
* otherwise by randomized quasi-Monte Carlo: scrambled Sobol points over the weights,
  independent scramblings giving the standard error (``"quasi-monte carlo"``).

**Bounds.**  All parameters are drawn independently, and the certificate of a neuron
depends only on its own incoming weights and bias, which no other neuron shares.  So
the certificates of different neurons are independent events and every formula of
:func:`bounds` is exact for the certified events (and a lower bound on the events
"inactive" and "collapsed" themselves, which can happen without a certificate).  A
neuron of a deeper layer ``k`` is certified by the sign test, bias ``<= 0`` and all
``l_(k-1)`` incoming weights ``<= 0``, of probability
``p_k = P(b <= 0) P(w <= 0)^(l_(k-1))``.  Then

* ``P(some neuron of layer k certified) = 1 - (1 - p_k)^(l_k)``;
* ``P(some neuron of the network certified) = 1 - prod_k (1 - p_k)^(l_k)``;
* ``P(certified collapse) = 1 - prod_k (1 - p_k^(l_k))`` (some layer all certified).

For the first layer, ``1 - (1 - p)^l1`` is the lower bound on the probability of
non-convergence of Do, Hannibal and Jentzen (2024, arXiv:2410.10533) for a shallow
student of a teacher of the same width.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate
from scipy.stats import chi, multivariate_normal, norm, qmc

from relutrap.domains import Ball, Box, Domain, FiniteSet, Gaussian
from relutrap.init import Initialization, Law
from relutrap.networks import Architecture

EXACT = "exact"
GENZ = "orthant (Genz)"
QUADRATURE = "quadrature"
QUASI_MONTE_CARLO = "quasi-monte carlo"

GENZ_TOLERANCE = 1e-6
GENZ_LARGEST_BOX = 4
IRWIN_HALL_LARGEST = 12
QMC_REPLICATES = 16
QMC_POINTS_LOG2 = 14


@dataclass(frozen=True)
class Probability:
    """A probability with how it was obtained.

    Attributes:
        value: the probability.
        method: ``exact``, ``orthant (Genz)``, ``quadrature`` or
            ``quasi-monte carlo`` (see the module docstring).
        standard_error: 0 for exact values; otherwise the estimator's error
            (a standard error for quasi-Monte Carlo, an error estimate or tolerance
            for the deterministic methods).
    """

    value: float
    method: str
    standard_error: float = 0.0

    def as_record(self) -> dict:
        return {
            "value": self.value,
            "method": self.method,
            "standard_error": self.standard_error,
        }


# ---------------------------------------------------------------- one dimension


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


# ------------------------------------------------------------ orthant probabilities


def _orthant(covariance: np.ndarray, upper: np.ndarray) -> Probability:
    """``P(Z <= upper)`` coordinatewise for ``Z ~ N(0, covariance)``.

    Coordinates of variance 0 are identically 0 and drop out (or make the event
    impossible).  Exact up to dimension 3 when ``upper = 0``; Genz's algorithm
    otherwise.
    """
    variances = np.diag(covariance)
    degenerate = variances <= 1e-300
    if np.any(degenerate & (upper < 0)):
        return Probability(0.0, EXACT)
    keep = ~degenerate
    covariance, upper = covariance[np.ix_(keep, keep)], upper[keep]
    m = len(upper)
    if m == 0:
        return Probability(1.0, EXACT)
    if m == 1:
        return Probability(
            float(norm.cdf(upper[0] / math.sqrt(covariance[0, 0]))), EXACT
        )
    if not np.any(upper):
        scale = np.sqrt(np.diag(covariance))
        correlation = np.clip(covariance / np.outer(scale, scale), -1.0, 1.0)
        if m == 2:
            return Probability(
                0.25 + math.asin(correlation[0, 1]) / (2 * math.pi), EXACT
            )
        if m == 3:
            angles = sum(
                math.asin(correlation[i, j]) for i, j in ((0, 1), (0, 2), (1, 2))
            )
            return Probability(0.125 + angles / (4 * math.pi), EXACT)
    value = multivariate_normal.cdf(
        upper,
        cov=covariance,
        allow_singular=True,
        abseps=GENZ_TOLERANCE,
        releps=0,
        maxpts=10**7,
        rng=np.random.default_rng(20241014),
    )
    return Probability(float(np.clip(value, 0.0, 1.0)), GENZ, GENZ_TOLERANCE)


def _sum(parts: list[Probability]) -> Probability:
    value = sum(part.value for part in parts)
    exact = all(part.method == EXACT for part in parts)
    method = EXACT if exact else next(p.method for p in parts if p.method != EXACT)
    error = sum(part.standard_error for part in parts)
    return Probability(float(min(max(value, 0.0), 1.0)), method, error)


def _bias_location_variance(bias: Law) -> tuple[float, float] | None:
    """``(v, var)`` for a bias ``v + N(0, var)``; ``None`` for a uniform bias."""
    if bias.kind == "normal":
        return 0.0, bias.scale**2
    if bias.kind == "constant":
        return bias.scale, 0.0
    return None


def _normal_box(weight: Law, bias: Law, box: Box) -> Probability | None:
    """Sum over the ``2^d`` weight orthants of ``(d + 1)``-dimensional orthant
    probabilities (see the module docstring)."""
    location = _bias_location_variance(bias)
    if weight.kind != "normal" or location is None:
        return None
    value, var_b = location
    if box.dimension > GENZ_LARGEST_BOX or value != 0:
        return None
    var_w, d = weight.scale**2, box.dimension
    parts = []
    for signs in itertools.product((1.0, -1.0), repeat=d):
        signs = np.asarray(signs)
        c = np.where(signs > 0, box.high, box.low)
        covariance = np.zeros((d + 1, d + 1))
        covariance[:d, :d] = var_w * np.eye(d)
        covariance[:d, d] = covariance[d, :d] = -signs * c * var_w
        covariance[d, d] = var_b + var_w * float(c @ c)
        upper = np.zeros(d + 1)
        upper[d] = -value
        parts.append(_orthant(covariance, upper))
    return _sum(parts)


def _normal_points(weight: Law, bias: Law, points: FiniteSet) -> Probability | None:
    """``P(b + w . x_i <= 0 for all i)``: one orthant probability over the points."""
    location = _bias_location_variance(bias)
    if weight.kind != "normal" or location is None:
        return None
    value, var_b = location
    x = np.unique(points.array(), axis=0)
    if len(x) > 3 or (len(x) > 1 and value != 0):
        return None
    covariance = var_b + weight.scale**2 * (x @ x.T)
    return _orthant(covariance, np.full(len(x), -value))


# ---------------------------------------------------- uniform laws, symmetric boxes


def _irwin_hall_integral(u: float, d: int) -> float:
    """``int_0^u P(T <= t) dt`` for ``T`` a sum of ``d`` independent U(0, 1)."""
    total = sum(
        (-1) ** k * math.comb(d, k) * max(u - k, 0.0) ** (d + 1) for k in range(d + 1)
    )
    return total / math.factorial(d + 1)


def _irwin_hall_cdf(u: float, d: int) -> float:
    total = sum(
        (-1) ** k * math.comb(d, k) * max(u - k, 0.0) ** d for k in range(d + 1)
    )
    return min(max(total / math.factorial(d), 0.0), 1.0)


def _uniform_symmetric_box(weight: Law, bias: Law, box: Box) -> Probability | None:
    """Uniform weights U(-alpha, alpha) on ``[-r, r]^d``: ``h(w) = r alpha T`` with
    ``T`` Irwin-Hall of order d, and ``p = E[F_b(-r alpha T)]`` in closed form."""
    if weight.kind != "uniform" or not box.symmetric or bias.kind == "normal":
        return None
    d = box.dimension
    if d > IRWIN_HALL_LARGEST:
        return None
    step = box.high * weight.scale  # h(w) = step * T
    if bias.kind == "constant":
        # P(v + step T <= 0) = P(T <= -v / step)
        return Probability(_irwin_hall_cdf(-bias.scale / step, d), EXACT)
    beta = bias.scale
    # F_b(-t) = (beta - t)^+ / (2 beta) for t >= 0
    value = step * _irwin_hall_integral(beta / step, d) / (2 * beta)
    return Probability(value, EXACT)


# ------------------------------------------------------------------------ balls


def _centred_ball(weight: Law, bias: Law, ball: Ball) -> Probability | None:
    """Normal weights on a ball around 0: ``h(w) = r sigma R``, R chi with d degrees
    of freedom, so ``p = E[F_b(-r sigma R)]``, one-dimensional."""
    if weight.kind != "normal" or any(ball.center):
        return None
    d, step = ball.dimension, ball.radius * weight.scale
    if bias.kind == "constant":
        return Probability(float(chi.cdf(-bias.scale / step, d)), EXACT)

    def integrand(t):
        return _bias_cdf(bias, -step * t) * chi.pdf(t, d)

    value, error = integrate.quad(integrand, 0, np.inf, epsabs=1e-12, epsrel=1e-10)
    return Probability(float(value), QUADRATURE, float(error))


# ------------------------------------------------------------ quasi-Monte Carlo


def _bias_cdf(bias: Law, x):
    """``P(b <= x)``, elementwise."""
    if bias.kind == "normal":
        return norm.cdf(x, scale=bias.scale)
    if bias.kind == "uniform":
        return np.clip((x + bias.scale) / (2 * bias.scale), 0.0, 1.0)
    return (
        (bias.scale <= x).astype(float)
        if isinstance(x, np.ndarray)
        else float(bias.scale <= x)
    )


def _weights_from_unit(weight: Law, unit: np.ndarray) -> np.ndarray:
    unit = np.clip(unit, 1e-15, 1 - 1e-15)
    if weight.kind == "normal":
        return weight.scale * norm.ppf(unit)
    if weight.kind == "uniform":
        return weight.scale * (2 * unit - 1)
    return np.full_like(unit, weight.scale)


def _quasi_monte_carlo(weight: Law, bias: Law, domain: Domain) -> Probability:
    """``E_w[F_b(-h(w))]`` by scrambled Sobol points; the spread of independent
    scramblings gives the standard error."""
    estimates = []
    for replicate in range(QMC_REPLICATES):
        sobol = qmc.Sobol(domain.dimension, scramble=True, rng=1000 + replicate)
        weights = _weights_from_unit(weight, sobol.random_base2(QMC_POINTS_LOG2))
        support = _support_in_chunks(domain, weights)
        estimates.append(float(np.mean(_bias_cdf(bias, -support))))
    estimates = np.asarray(estimates)
    error = float(np.std(estimates, ddof=1) / math.sqrt(len(estimates)))
    return Probability(float(np.mean(estimates)), QUASI_MONTE_CARLO, error)


def _support_in_chunks(domain: Domain, weights: np.ndarray) -> np.ndarray:
    if not isinstance(domain, FiniteSet):
        return domain.support(weights)
    points = domain.array()
    largest = np.full(len(weights), -np.inf)
    for start in range(0, len(points), 512):
        block = weights @ points[start : start + 512].T
        largest = np.maximum(largest, block.max(axis=1))
    return largest


# ----------------------------------------------------------------- dispatching


@functools.lru_cache(maxsize=1024)
def neuron_inactivity(weight: Law, bias: Law, domain: Domain) -> Probability:
    """The probability that ``x -> w . x + b`` is inactive on ``domain``, each weight
    drawn from ``weight`` and the bias from ``bias``, all independent."""
    if isinstance(domain, Gaussian):
        return Probability(0.0, EXACT)
    if isinstance(domain, Ball) and domain.dimension == 1:
        (center,) = domain.center
        domain = Box(center - domain.radius, center + domain.radius, 1)
    if isinstance(domain, FiniteSet) and domain.dimension == 1:
        x = domain.array()[:, 0]
        if x.min() < x.max():
            domain = Box(float(x.min()), float(x.max()), 1)
    if isinstance(domain, Box) and domain.dimension == 1:
        exact = _exact_one_dimensional(weight, bias, domain.low, domain.high)
        if exact is not None:
            return Probability(exact, EXACT)
    candidates = {
        Box: (_uniform_symmetric_box, _normal_box),
        FiniteSet: (_normal_points,),
        Ball: (_centred_ball,),
    }
    for method in candidates.get(type(domain), ()):
        found = method(weight, bias, domain)
        if found is not None:
            return found
    return _quasi_monte_carlo(weight, bias, domain)


def _as_domain(arch: Architecture, domain, high) -> Domain:
    if isinstance(domain, Box | Ball | FiniteSet | Gaussian):
        if domain.dimension != arch[0]:
            raise ValueError(
                f"domain of dimension {domain.dimension} for an input dimension "
                f"{arch[0]}"
            )
        return domain
    return Box(float(domain), float(high), arch[0])


def first_layer_inactivity(
    init: Initialization, arch: Architecture, domain, high: float | None = None
) -> Probability:
    """The probability p that one first-layer neuron is inactive on the domain at init.

    Args:
        domain: a :mod:`relutrap.domains` object, or the lower end ``low`` of the box
            ``[low, high]^d`` with ``high`` given.
    """
    domain = _as_domain(arch, domain, high)
    weight = init.weight_law(arch[0], arch[1])
    bias = init.bias_law(arch[0], arch[1])
    return neuron_inactivity(weight, bias, domain)


def some_first_layer_inactivity(p: Probability, width: int) -> Probability:
    """P(at least one of ``width`` independent first-layer neurons is inactive)."""
    value = 1 - (1 - p.value) ** width
    error = width * (1 - p.value) ** (width - 1) * p.standard_error
    return Probability(value, p.method, error)


# ----------------------------------------------------------------------- bounds


def _nonpositive(law: Law) -> float:
    """``P(X <= 0)``: 1/2 for the centred normal and uniform laws."""
    if law.kind == "constant":
        return float(law.scale <= 0)
    return 0.5


def sign_certified_probability(
    init: Initialization, fan_in: int, fan_out: int
) -> float:
    """``p_k = P(b <= 0) P(w <= 0)^fan_in`` for a neuron of a deeper layer (exact)."""
    weight = init.weight_law(fan_in, fan_out)
    bias = init.bias_law(fan_in, fan_out)
    return _nonpositive(bias) * _nonpositive(weight) ** fan_in


@dataclass(frozen=True)
class LayerBound:
    """The certified events of one hidden layer.

    Attributes:
        layer: 1 for the first hidden layer.
        width: ``l_k``.
        certificate: ``support function`` (first layer) or ``sign`` (deeper).
        neuron: ``p_k``, one given neuron certified inactive.
        some: ``1 - (1 - p_k)^l_k``, at least one neuron of the layer certified.
        every: ``p_k^l_k``, the whole layer certified (a certified collapse).
    """

    layer: int
    width: int
    certificate: str
    neuron: Probability
    some: Probability
    every: Probability


@dataclass(frozen=True)
class Bounds:
    """Certified inactivity at init of one architecture, initialization and domain.

    Attributes:
        layers: one :class:`LayerBound` per hidden layer.
        some_neuron: ``1 - prod_k (1 - p_k)^l_k``.
        collapse: ``1 - prod_k (1 - p_k^l_k)``, a lower bound on the probability of
            a collapse.
    """

    layers: tuple[LayerBound, ...]
    some_neuron: Probability
    collapse: Probability

    def as_record(self) -> dict:
        return {
            "layers": [
                {
                    "layer": layer.layer,
                    "width": layer.width,
                    "certificate": layer.certificate,
                    "neuron": layer.neuron.as_record(),
                    "some": layer.some.as_record(),
                    "every": layer.every.as_record(),
                }
                for layer in self.layers
            ],
            "some_neuron": self.some_neuron.as_record(),
            "collapse": self.collapse.as_record(),
        }


def bounds(init: Initialization, arch: Architecture, domain, high=None) -> Bounds:
    """The certified-inactivity probabilities of every layer and of the network on
    ``domain`` (as in :func:`first_layer_inactivity`)."""
    return bounds_from(first_layer_inactivity(init, arch, domain, high), init, arch)


def bounds_from(first: Probability, init: Initialization, arch: Architecture) -> Bounds:
    """:func:`bounds` given the first-layer probability ``first``.

    Only the first-layer ``p`` may be an estimate; its error is carried through
    every formula by the derivative (delta method).
    """
    widths = arch[1:-1]
    neurons = [first.value] + [
        sign_certified_probability(init, fan_in, fan_out)
        for fan_in, fan_out in zip(arch[1:-2], arch[2:-1])
    ]
    error = first.standard_error

    def carried(value: float, derivative: float) -> Probability:
        return Probability(value, first.method, abs(derivative) * error)

    layers = []
    for k, (p, width) in enumerate(zip(neurons, widths)):
        d_some = width * (1 - p) ** (width - 1) if k == 0 else 0.0
        d_every = width * p ** (width - 1) if k == 0 else 0.0
        layers.append(
            LayerBound(
                layer=k + 1,
                width=width,
                certificate="support function" if k == 0 else "sign",
                neuron=first if k == 0 else Probability(p, EXACT),
                some=carried(1 - (1 - p) ** width, d_some)
                if k == 0
                else Probability(1 - (1 - p) ** width, EXACT),
                every=carried(p**width, d_every)
                if k == 0
                else Probability(p**width, EXACT),
            )
        )
    alive = [(1 - p) ** width for p, width in zip(neurons, widths)]
    intact = [1 - p**width for p, width in zip(neurons, widths)]
    rest_alive = math.prod(alive[1:])
    rest_intact = math.prod(intact[1:])
    some_neuron = carried(
        1 - math.prod(alive),
        rest_alive * widths[0] * (1 - neurons[0]) ** (widths[0] - 1),
    )
    collapse = carried(
        1 - math.prod(intact), rest_intact * widths[0] * neurons[0] ** (widths[0] - 1)
    )
    return Bounds(tuple(layers), some_neuron, collapse)
