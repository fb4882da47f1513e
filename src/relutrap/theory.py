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

Every form keeps its value for domains of any finite size: the interval forms are
``atan2``s and ratios that do not overflow (an endpoint at infinity gives the limit),
orthant covariances and supports are computed for the domain divided by a power of 2
near its size, and a support beyond the float range counts as infinite.  The exact
sums of orthant probabilities carry rounding errors of about ``1e-16``.

**The asymmetric scheme** (:func:`asymmetric_inactivity`) draws the entries of a
neuron jointly, not independently: one of ``(w, b)`` from Beta(2, 1), the others
normal.  For one input its ``p`` is exact (the Beta entry is the weight or the bias
with probability 1/2 each, and each case is ``E[Phi(-z B)]`` for ``B ~ Beta(2, 1)``,
a closed form in the chi-square law of 3 degrees of freedom); in higher dimension it
is estimated by Monte Carlo over neurons drawn by the scheme itself
(``"monte carlo"``).

**Bounds.**  All parameters are drawn independently, and the certificate of a neuron
depends only on its own incoming weights and bias, which no other neuron shares.  So
the certificates of different neurons are independent events and every formula of
:func:`bounds` is exact for the certified events (and a lower bound on the events
"inactive" and "collapsed" themselves, which can happen without a certificate).  A
neuron of a deeper layer ``k`` is certified by the sign test, bias ``<= 0`` and all
``l_(k-1)`` incoming weights ``<= 0``, of probability
``p_k = P(b <= 0) P(w <= 0)^(l_(k-1))``; 0 under the asymmetric scheme, whose
positive Beta(2, 1) entry no neuron lacks.  Then

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
from scipy import integrate, special
from scipy.stats import chi, multivariate_normal, norm, qmc

from relutrap.domains import Ball, Box, Domain, FiniteSet, Gaussian
from relutrap.init import Initialization, Law
from relutrap.networks import Architecture

EXACT = "exact"
GENZ = "orthant (Genz)"
QUADRATURE = "quadrature"
QUASI_MONTE_CARLO = "quasi-monte carlo"
MONTE_CARLO = "monte carlo"
ASYMMETRIC_SAMPLES = 2_000_000
ASYMMETRIC_CHUNK_ENTRIES = 2**22

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
        method: ``exact``, ``orthant (Genz)``, ``quadrature``,
            ``quasi-monte carlo`` or ``monte carlo`` (see the module docstring).
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


def _normal_pair_both_nonpositive(
    bias_scale: float, weight_scale: float, low: float, high: float
) -> float:
    """``P(b + w low <= 0, b + w high <= 0)`` for ``b ~ N(0, sb^2)``, ``w ~ N(0, sw^2)``
    independent, ``sb, sw > 0``.

    ``b + w t`` is ``u_t . Z`` for ``Z`` standard normal in the plane and
    ``u_t = (sb, t sw)``, so the probability is ``(pi - theta) / (2 pi)``, ``theta``
    the angle between ``u_low`` and ``u_high`` (Sheppard's formula).  The two parts
    of ``pi - theta`` are the angles of ``u_high`` and ``u_(-low)`` to the second
    axis, each an ``atan2`` that keeps its relative accuracy and does not overflow
    however far the endpoints lie (an infinite one gives the limit).
    """
    return (
        math.atan2(bias_scale, high * weight_scale)
        + math.atan2(bias_scale, -low * weight_scale)
    ) / (2 * math.pi)


def _uniform_half(kappa: float) -> float:
    """``int_0^1 F(-kappa v) dv`` for the CDF ``F`` of U(-1, 1): the share of the
    weights of one sign, scaled to U(0, 1), that leave ``b + w t <= 0`` for one
    endpoint ``t``, ``kappa = t a / beta`` (``a``, ``beta`` the half-widths of the
    weight and bias laws).  Finite for every ``kappa``, the limits at infinity
    included."""
    if kappa >= 1:
        return 1 / (4 * kappa)
    if kappa >= -1:
        return 0.5 - kappa / 4
    return 1 + 1 / (4 * kappa)


def _exact_one_dimensional(
    weight: Law, bias: Law, low: float, high: float
) -> float | None:
    """p for ``w x + b`` on ``[low, high]``, or ``None`` where no closed form is coded.

    The neuron is inactive iff ``b + w low <= 0`` and ``b + w high <= 0``.  Every
    form here stays finite for endpoints of any size (see
    :func:`_normal_pair_both_nonpositive`).
    """
    weight, bias = _degenerate_as_constant(weight), _degenerate_as_constant(bias)
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
        return _normal_pair_both_nonpositive(bias.scale, weight.scale, low, high)
    if weight.kind == "uniform" and bias.kind == "uniform":
        # w = a v > 0: inactive iff b <= -w high; w = -a v < 0: iff b <= a v low.
        ratio = weight.scale / bias.scale
        return (_uniform_half(high * ratio) + _uniform_half(-low * ratio)) / 2
    return None


def _degenerate_as_constant(law: Law) -> Law:
    """A normal or uniform law of scale 0 is the constant 0."""
    return Law("constant", 0.0) if law.scale == 0 else law


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
        # The event b + c . w <= 0 is that of (b + c . w) / m <= 0: dividing by a
        # power of 2 near |c| keeps every entry finite on the largest boxes.
        m = _power_of_two_near(c)
        c, bias_part = c / m, math.sqrt(var_b) / m
        covariance = np.zeros((d + 1, d + 1))
        covariance[:d, :d] = var_w * np.eye(d)
        covariance[:d, d] = covariance[d, :d] = -signs * c * var_w
        covariance[d, d] = bias_part**2 + var_w * float(c @ c)
        parts.append(_orthant(covariance, np.zeros(d + 1)))
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
    # Coordinate i divided by a power of 2 near |x_i|: the same event, finite
    # entries however far the points lie.
    m = np.array([_power_of_two_near(point) for point in x])
    x, bias_part = x / m[:, None], math.sqrt(var_b) / m
    covariance = np.outer(bias_part, bias_part) + weight.scale**2 * (x @ x.T)
    return _orthant(covariance, -value / m)


def _power_of_two_near(values) -> float:
    """A power of 2 within a factor 2 of the largest ``|value|`` (1 where that is
    at most 1): dividing by it is exact and leaves entries below 2 in size."""
    largest = float(np.max(np.abs(values)))
    if not largest > 1:
        return 1.0
    return math.ldexp(1.0, math.frexp(largest)[1] - 1)


# ---------------------------------------------------- uniform laws, symmetric boxes


def _irwin_hall_integral(u: float, d: int) -> float:
    """``int_0^u P(T <= t) dt`` for ``T`` a sum of ``d`` independent U(0, 1),
    ``0 <= u <= d``."""
    total = sum(
        (-1) ** k * math.comb(d, k) * max(u - k, 0.0) ** (d + 1) for k in range(d + 1)
    )
    return total / math.factorial(d + 1)


def _irwin_hall_cdf(u: float, d: int) -> float:
    if u <= 0 or u >= d:
        # Outside the support the alternating sum would only lose digits.
        return float(u >= d)
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
    # F_b(-t) = (beta - t)^+ / (2 beta) for t >= 0, so with u = beta / step
    # p = E[(u - T)^+] / (2 u) = int_0^u P(T <= t) dt / (2 u); for u >= d, where
    # T <= u always, that is (u - d / 2) / (2 u).
    u = bias.scale / step
    if u >= d:
        value = 0.5 - d / (4 * u)
    else:
        value = _irwin_hall_integral(u, d) / (2 * u) if u > 0 else 0.0
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
    """``h(w)`` for weights of shape ``(n, d)``, computed for the weights and the
    domain divided by powers of 2 near their sizes, then scaled back: no partial
    sum overflows (which could add ``+inf`` and ``-inf``), and a support too large
    for a float is ``+-inf``, which the bias' CDF takes as its limit."""
    weight_scale = _power_of_two_near(weights)
    weights = weights / weight_scale
    if isinstance(domain, FiniteSet):
        points = domain.array()
        domain_scale = _power_of_two_near(points)
        points = points / domain_scale
        support = np.full(len(weights), -np.inf)
        for start in range(0, len(points), 512):
            block = weights @ points[start : start + 512].T
            support = np.maximum(support, block.max(axis=1))
    else:
        domain, domain_scale = _unit_domain(domain)
        support = domain.support(weights)
    with np.errstate(over="ignore"):
        return support * weight_scale * domain_scale


def _unit_domain(domain: Domain) -> tuple[Domain, float]:
    """``(K / m, m)`` for a box or ball ``K`` and ``m`` a power of 2 near its size
    (:func:`_power_of_two_near`), so that ``h_K = m h_(K / m)``."""
    if isinstance(domain, Box):
        scale = _power_of_two_near([domain.low, domain.high])
        return Box(domain.low / scale, domain.high / scale, domain.dimension), scale
    if isinstance(domain, Ball):
        scale = _power_of_two_near([*domain.center, domain.radius])
        center = tuple(value / scale for value in domain.center)
        # A radius below 1e-308 of the center is 0 to the support; the smallest
        # float keeps the ball a ball.
        return Ball(center, max(domain.radius / scale, math.ulp(0.0))), scale
    return domain, 1.0


# ----------------------------------------------------------------- dispatching


@functools.lru_cache(maxsize=1024)
def neuron_inactivity(weight: Law, bias: Law, domain: Domain) -> Probability:
    """The probability that ``x -> w . x + b`` is inactive on ``domain``, each weight
    drawn from ``weight`` and the bias from ``bias``, all independent."""
    if isinstance(domain, Gaussian):
        return Probability(0.0, EXACT)
    interval = _interval(domain)
    if interval is not None:
        exact = _exact_one_dimensional(weight, bias, *interval)
        if exact is not None:
            return Probability(exact, EXACT)
        if not isinstance(domain, Box):
            domain = Box(*interval, 1) if interval[0] < interval[1] else domain
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


def _interval(domain: Domain) -> tuple[float, float] | None:
    """``(low, high)`` for a one-dimensional box or ball, or a finite set of the
    line by its hull (a neuron is inactive on points iff on their hull);
    ``None`` otherwise.  A single point gives ``low == high``."""
    if isinstance(domain, Gaussian) or domain.dimension != 1:
        return None
    if isinstance(domain, Box):
        return domain.low, domain.high
    if isinstance(domain, Ball):
        (center,) = domain.center
        return center - domain.radius, center + domain.radius
    x = domain.array()[:, 0]
    return float(x.min()), float(x.max())


def _as_domain(arch: Architecture, domain, high) -> Domain:
    if isinstance(domain, Box | Ball | FiniteSet | Gaussian):
        if domain.dimension != arch[0]:
            raise ValueError(
                f"domain of dimension {domain.dimension} for an input dimension "
                f"{arch[0]}"
            )
        return domain
    return Box(float(domain), float(high), arch[0])


def _beta_normal_tail(z: float) -> float:
    """``E[Phi(-z W)]`` for ``W ~ Beta(2, 1)`` (density ``2 w`` on (0, 1)),
    ``z >= 0`` (``inf`` allowed).

    By parts, ``int_0^1 2 w Phi(-z w) dw = Phi(-z) + z int_0^1 w^2 phi(z w) dw``,
    and ``int_0^z t^2 phi(t) dt = P(chi^2_3 <= z^2) / 2`` (with ``x = t^2``,
    ``t^2 phi(t) dt = f_3(x) dx / 2``, ``f_3`` the chi-square density of 3 degrees
    of freedom), so the value is
    ``Phi(-z) + P(chi^2_3 <= z^2) / (2 z^2)``; near 0 its expansion
    ``1/2 - 2 z / (3 sqrt(2 pi))`` (error ``O(z^3)``) avoids dividing by ``z^2``.
    """
    if z < 1e-8:
        return 0.5 - 2 * z / (3 * math.sqrt(2 * math.pi))
    return float(norm.cdf(-z) + special.gammainc(1.5, z * z / 2) / (2 * z * z))


def _asymmetric_interval(low: float, high: float) -> float:
    """p of the asymmetric scheme for one input on ``[low, high]`` (exact).

    The neuron's ``(w, b)`` has its Beta(2, 1) entry ``B`` at either place with
    probability 1/2 and the other entry ``N(0, s^2)``, ``s^2 = 3/2``
    (:func:`relutrap.init.asymmetric_layer` with fan-in 1).  It is inactive iff
    ``b + max(w low, w high) <= 0``.

    * ``w = B > 0``: the maximum is ``B high``, so ``P(b <= -B high) =
      E[Phi(-B high / s)]``, which is :func:`_beta_normal_tail` of ``high / s``,
      or one minus that of ``-high / s`` for ``high < 0`` (``b`` is symmetric).
    * ``b = B > 0``: ``max(w low, w high) <= -B < 0`` is impossible where the
      interval holds 0; otherwise, ``l = min(|low|, |high|)`` its distance to 0, it
      holds iff ``w`` has the sign that makes both ends negative and
      ``|w| >= B / l``: ``E[Phi(-B / (l s))]``, :func:`_beta_normal_tail` of
      ``1 / (l s)``.
    """
    s = math.sqrt(1.5)
    if high >= 0:
        weight_entry = _beta_normal_tail(high / s)
    else:
        weight_entry = 1 - _beta_normal_tail(-high / s)
    distance = max(low, -high, 0.0)
    bias_entry = _beta_normal_tail(1 / (distance * s)) if distance > 0 else 0.0
    return (weight_entry + bias_entry) / 2


@functools.lru_cache(maxsize=256)
def asymmetric_inactivity(domain: Domain) -> Probability:
    """p under the asymmetric scheme (Lu, Shin, Su and Karniadakis 2019,
    arXiv:1903.06733).

    Exact for one input (:func:`_asymmetric_interval`) and for Gaussian inputs
    (0); otherwise estimated by Monte Carlo over at least
    :data:`ASYMMETRIC_SAMPLES` neurons drawn by the scheme itself
    (:func:`relutrap.init.asymmetric_layer`) in float64, in chunks of about
    :data:`ASYMMETRIC_CHUNK_ENTRIES` entries: a neuron is inactive iff
    ``b + h(w) <= 0``.
    """
    import jax

    from relutrap.init import asymmetric_layer

    if isinstance(domain, Gaussian):
        return Probability(0.0, EXACT)
    interval = _interval(domain)
    if interval is not None:
        return Probability(_asymmetric_interval(*interval), EXACT)
    d = domain.dimension
    neurons = max(1, ASYMMETRIC_CHUNK_ENTRIES // (d + 1))
    chunks = -(-ASYMMETRIC_SAMPLES // neurons)
    inactive = 0
    with jax.enable_x64(True):
        draw = jax.jit(asymmetric_layer, static_argnums=(1, 2, 3))
        key = jax.random.key(20241014)
        for chunk in range(chunks):
            weights, bias = draw(jax.random.fold_in(key, chunk), d, neurons, np.float64)
            weights, bias = np.asarray(weights).T, np.asarray(bias)
            inactive += int(np.sum(bias + _support_in_chunks(domain, weights) <= 0))
    n = chunks * neurons
    fraction = inactive / n
    return Probability(fraction, MONTE_CARLO, math.sqrt(fraction * (1 - fraction) / n))


def first_layer_inactivity(
    init: Initialization, arch: Architecture, domain, high: float | None = None
) -> Probability:
    """The probability p that one first-layer neuron is inactive on the domain at init.

    Args:
        domain: a :mod:`relutrap.domains` object, or the lower end ``low`` of the box
            ``[low, high]^d`` with ``high`` given.
    """
    domain = _as_domain(arch, domain, high)
    if init.is_asymmetric:
        return asymmetric_inactivity(domain)
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
    """``p_k = P(b <= 0) P(w <= 0)^fan_in`` for a neuron of a deeper layer (exact).

    Under the asymmetric scheme one entry of each neuron's ``(w, b)`` is drawn
    from Beta(2, 1), positive with probability 1, so no neuron passes the sign
    test: ``p_k = 0``.
    """
    if init.is_asymmetric:
        return 0.0
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
