"""Rates: how fast a probability tends to one along the width or the depth.

The theory predicts ``1 - P(x) = C q^x``: for the event "some first-layer neuron is
certified inactive" ``1 - P = (1 - p)^l1``, a straight line of slope
``log(1 - p)`` in ``log(1 - P)`` against the width ``l1``.  :func:`fit_rate` fits

    log(1 - P(x)) = alpha + beta x

to counts ``k_i`` of runs with the event among ``n_i`` runs at ``x_i`` by binomial
maximum likelihood,

    l(alpha, beta) = sum_i (n_i - k_i) eta_i + k_i log(1 - exp(eta_i)),
    eta_i = alpha + beta x_i <= 0,

which is jointly concave in ``(alpha, beta)``.  The interval for the slope is the 95%
profile-likelihood interval: the ``beta`` whose profile
``max_alpha l(alpha, beta)`` lies within ``chi2_1(0.95) / 2`` of the maximum
(Wilks).  No normal approximation of the counts is made, so cells with
``k_i = 0`` or ``k_i = n_i`` are used as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize_scalar
from scipy.stats import chi2

METHOD = "binomial maximum likelihood, profile-likelihood interval"
_ALPHA_RANGE = 60.0


@dataclass(frozen=True)
class RateFit:
    """A fitted line ``log(1 - P) = intercept + slope x``.

    Attributes:
        slope: the maximum-likelihood slope ``beta``.
        low, high: the profile-likelihood interval of the slope; ``None`` where the
            likelihood does not fall far enough within the searched range (the data
            do not bound the slope on that side).
        intercept: ``alpha`` at the maximum.
    """

    slope: float
    low: float | None
    high: float | None
    intercept: float
    confidence: float


def _log_likelihood(alpha, beta, x, events, trials) -> float:
    eta = np.minimum(alpha + beta * x, -1e-300)
    with np.errstate(divide="ignore"):
        survive = np.where(events > 0, np.log(-np.expm1(eta)), 0.0)
    return float(np.sum((trials - events) * eta + events * survive))


def _profile(beta, x, events, trials) -> tuple[float, float]:
    """``(max_alpha l(alpha, beta), argmax)`` over ``alpha <= -max_i beta x_i``."""
    top = -float(np.max(beta * x))
    if np.all(events == 0):
        return _log_likelihood(top, beta, x, events, trials), top
    survivors = float(np.sum(trials - events))

    def slope_in_alpha(alpha):
        # d l / d alpha, decreasing from about sum(n - k) > 0 to -inf at the top.
        eta = np.minimum(alpha + beta * x, -1e-300)
        return survivors - float(np.sum(events / np.expm1(-eta)))

    lowest, highest = top - _ALPHA_RANGE, top - 1e-12
    if slope_in_alpha(lowest) <= 0:
        alpha = lowest
    elif slope_in_alpha(highest) >= 0:
        # No event where eta is largest: the maximum sits on the boundary P = 0.
        alpha = top
    else:
        alpha = brentq(slope_in_alpha, lowest, highest, xtol=1e-13)
    return _log_likelihood(alpha, beta, x, events, trials), float(alpha)


def fit_rate(x, events, trials, confidence: float = 0.95) -> RateFit | None:
    """Fit ``log(1 - P(x)) = alpha + beta x`` to binomial counts.

    Args:
        x: the positions (widths or depths), at least two distinct values.
        events: runs with the event at each position.
        trials: runs at each position.

    Returns:
        the fit, or ``None`` where it is not identified: fewer than two distinct
        positions, every run at every position had the event (``1 - P = 0``), or
        the likelihood keeps growing as the slope runs off to an infinity (say
        some runs without the event at the first position and none after it: the
        data fit ``1 - P`` falling to 0 at once better than any finite slope).
    """
    x = np.asarray(x, dtype=float)
    events = np.asarray(events, dtype=float)
    trials = np.asarray(trials, dtype=float)
    if len(np.unique(x)) < 2 or np.all(events >= trials):
        return None
    reach = 50.0 / float(np.max(np.abs(x)))

    def negative_profile(beta):
        return -_profile(beta, x, events, trials)[0]

    best = minimize_scalar(
        negative_profile,
        bounds=(-reach, reach),
        method="bounded",
        options={"xatol": 1e-10},
    )
    slope = float(best.x)
    if abs(slope) > reach * (1 - 1e-3):
        return None
    peak, intercept = _profile(slope, x, events, trials)
    drop = chi2.ppf(confidence, 1) / 2

    def excess(beta):
        return _profile(beta, x, events, trials)[0] - (peak - drop)

    def end(limit: float) -> float | None:
        if excess(limit) > 0:
            return None
        return float(brentq(excess, min(slope, limit), max(slope, limit), xtol=1e-12))

    return RateFit(slope, end(-reach), end(reach), intercept, confidence)


def line_slope(x, values) -> float | None:
    """The least-squares slope of ``values`` against ``x``; ``None`` where a value
    is not finite or ``x`` has fewer than two distinct positions."""
    x = np.asarray(x, dtype=float)
    values = np.asarray(values, dtype=float)
    if len(np.unique(x)) < 2 or not np.all(np.isfinite(values)):
        return None
    return float(np.polyfit(x, values, 1)[0])


def log_survival(probability: float | None) -> float:
    """``log(1 - P)``: ``-inf`` at ``P = 1``, ``nan`` where ``P`` is unknown."""
    if probability is None:
        return math.nan
    return math.log1p(-probability) if probability < 1 else -math.inf
