import functools
import itertools
import math

import jax
import numpy as np
import pytest
from scipy.stats import norm

from relutrap.domains import Ball, Box, FiniteSet, Gaussian
from relutrap.inactivity import certified, first_layer_certified
from relutrap.init import Initialization, Law, initialize
from relutrap.problems import Problem
from relutrap.theory import (
    EXACT,
    GENZ,
    QUADRATURE,
    QUASI_MONTE_CARLO,
    Probability,
    bounds,
    first_layer_inactivity,
    neuron_inactivity,
    sign_certified_probability,
    some_first_layer_inactivity,
)

NETWORKS = 2_000
WIDTH = 100  # 200k first-layer neurons in all


@functools.cache
def _first_layers(init: Initialization, dimension: int):
    arch = (dimension, WIDTH, 1)
    draw = jax.vmap(lambda key: initialize(key, arch, init)[0])
    keys = jax.random.split(jax.random.key(11), NETWORKS)
    return draw(keys)


def monte_carlo(init: Initialization, dimension: int, low: float, high: float):
    """Fraction of first-layer neurons drawn by ``initialize`` that are certified
    inactive on the box, and the number of neurons."""
    weights, bias = _first_layers(init, dimension)
    inactive = jax.vmap(lambda w, b: first_layer_certified(w, b, low, high))(
        weights, bias
    )
    return float(np.mean(inactive)), inactive.size


EXACT_CASES = [
    # init, domain, value where known in closed form
    (Initialization("normal"), (0.0, 1.0), 3 / 8),
    (Initialization("normal"), (-1.0, 1.0), 1 / 4),
    (Initialization("he_normal"), (0.0, 1.0), 1 / 2),
    (Initialization("he_normal"), (-1.0, 1.0), 0.0),
    (Initialization("normal", "constant", -0.5), (0.0, 1.0), norm.cdf(0.5)),
    (Initialization("normal", "constant", 0.3), (0.0, 1.0), 0.0),
    (Initialization("normal", "constant", 0.3), (-2.0, -1.0), norm.sf(0.3)),
    (Initialization("uniform", scale=2.0), (-0.5, 1.5), None),
    (Initialization("torch_default"), (0.5, 2.0), None),
    (Initialization("glorot_uniform", "constant", -0.1), (1.0, 3.0), None),
    (Initialization("he_uniform", "same"), (-1.0, 3.0), None),
]


@pytest.mark.parametrize("init, domain, value", EXACT_CASES)
def test_exact_first_layer_inactivity_agrees_with_monte_carlo(init, domain, value):
    p = first_layer_inactivity(init, (1, WIDTH, 1), *domain)
    fraction, n = monte_carlo(init, 1, *domain)

    assert p.method == "exact"
    assert p.standard_error == 0.0
    if value is not None:
        assert p.value == pytest.approx(value, abs=1e-12)
    standard_error = math.sqrt(p.value * (1 - p.value) / n)
    assert abs(fraction - p.value) <= 4 * standard_error + 1e-12


def test_two_dimensional_closed_form_agrees_with_the_initializer():
    init = Initialization("normal")
    p = first_layer_inactivity(init, (2, WIDTH, 1), 0.0, 1.0)
    fraction, n = monte_carlo(init, 2, 0.0, 1.0)

    assert p.method == EXACT
    assert abs(fraction - p.value) <= 4 * math.sqrt(p.value * (1 - p.value) / n)
    # A neuron inactive on [0, 1]^2 is inactive on [0, 1] x {0}: p is below the 1-d 3/8.
    assert p.value < 3 / 8


SAMPLES = 4_000_000


def _draw(law: Law, rng, shape):
    if law.kind == "normal":
        return law.scale * rng.standard_normal(shape)
    if law.kind == "uniform":
        return rng.uniform(-law.scale, law.scale, shape)
    return np.full(shape, law.scale)


def neuron_monte_carlo(init: Initialization, domain, seed=5):
    """The fraction of SAMPLES neurons drawn from the init's first-layer laws that
    are inactive on the domain (b + h(w) <= 0), with its standard error."""
    rng = np.random.default_rng(seed)
    d = domain.dimension
    weight, bias = init.weight_law(d, 8), init.bias_law(d, 8)
    inactive = 0
    for _ in range(4):
        n = SAMPLES // 4
        weights = _draw(weight, rng, (n, d))
        inactive += int(np.sum(_draw(bias, rng, n) + domain.support(weights) <= 0))
    fraction = inactive / SAMPLES
    return fraction, math.sqrt(max(fraction * (1 - fraction), 1e-12) / SAMPLES)


CLOSED_FORMS = [
    # init, domain, method, value where known otherwise
    (Initialization("normal"), Box(0.0, 1.0, 2), EXACT, None),
    (Initialization("normal"), Box(-1.0, 1.0, 2), EXACT, None),
    (Initialization("he_normal"), Box(0.0, 1.0, 2), EXACT, 1 / 4),
    (Initialization("normal"), Box(0.0, 1.0, 3), GENZ, None),
    (Initialization("normal"), Box(-1.0, 1.0, 3), GENZ, None),
    (Initialization("he_normal"), Box(0.0, 1.0, 3), GENZ, 1 / 8),
    (Initialization("torch_default"), Box(-1.0, 1.0, 2), EXACT, 1 / 12),
    (Initialization("torch_default"), Box(-1.0, 1.0, 3), EXACT, None),
    (Initialization("torch_default"), Box(-0.5, 0.5, 3), EXACT, None),
    (Initialization("he_uniform"), Box(-1.0, 1.0, 3), EXACT, 0.0),
    (Initialization("uniform", "constant", -2.0), Box(-1.0, 1.0, 2), EXACT, None),
    (Initialization("normal"), Ball((0.0, 0.0), 1.0), QUADRATURE, None),
    (Initialization("normal"), Ball((0.0, 0.0, 0.0), 0.5), QUADRATURE, None),
    (Initialization("normal", "constant", -1.0), Ball((0.0, 0.0), 1.0), EXACT, None),
    (Initialization("normal"), Ball((0.5, -0.2), 1.0), QUASI_MONTE_CARLO, None),
    (Initialization("normal"), Ball((2.0,), 0.5), EXACT, None),
    (Initialization("normal"), FiniteSet.of([[0, 1], [1, 0], [1, 1]]), EXACT, None),
    (Initialization("normal"), FiniteSet.of([[0.2], [0.9], [0.5]]), EXACT, None),
    (Initialization("uniform"), Box(0.0, 1.0, 2), QUASI_MONTE_CARLO, None),
    (
        Initialization("normal", "constant", -0.3),
        Box(0.0, 1.0, 2),
        QUASI_MONTE_CARLO,
        None,
    ),
    (Initialization("normal"), Box(0.0, 1.0, 5), QUASI_MONTE_CARLO, None),
]


@pytest.mark.parametrize("init, domain, method, value", CLOSED_FORMS)
def test_inactivity_agrees_with_high_precision_monte_carlo(init, domain, method, value):
    arch = (domain.dimension, 8, 1)
    p = first_layer_inactivity(init, arch, domain)
    fraction, error = neuron_monte_carlo(init, domain)

    assert p.method == method
    assert (p.standard_error == 0) == (method == EXACT)
    assert p.standard_error < 1e-4
    if value is not None:
        assert p.value == pytest.approx(value, abs=1e-9)
    assert abs(fraction - p.value) <= 4.5 * math.hypot(error, p.standard_error)


def test_many_points_are_estimated_with_their_error():
    points = FiniteSet.of(np.random.default_rng(0).uniform(-1, 1, (40, 2)))
    init = Initialization("normal")
    p = first_layer_inactivity(init, (2, 8, 1), points)
    fraction, error = neuron_monte_carlo(init, points)

    assert p.method == QUASI_MONTE_CARLO
    assert 0 < p.standard_error < 1e-3
    assert abs(fraction - p.value) <= 4.5 * math.hypot(error, p.standard_error)
    # More points, fewer inactive neurons: the hull of three of them holds less.
    three = FiniteSet(points.points[:3])
    assert p.value <= first_layer_inactivity(init, (2, 8, 1), three).value + 1e-3


def test_gaussian_inputs_leave_no_first_layer_neuron_inactive():
    for scheme in ("normal", "torch_default", "he_uniform"):
        p = first_layer_inactivity(
            Initialization(scheme), (2, 8, 1), Gaussian((0.0, 0.0), 1.0)
        )
        assert p == Probability(0.0, EXACT)


def test_a_box_as_low_and_high_is_the_same_as_the_domain_object():
    init = Initialization("normal")

    assert first_layer_inactivity(init, (2, 4, 1), -1.0, 2.0) == first_layer_inactivity(
        init, (2, 4, 1), Box(-1.0, 2.0, 2)
    )
    with pytest.raises(ValueError, match="dimension"):
        first_layer_inactivity(init, (3, 4, 1), Box(0.0, 1.0, 2))


def test_the_problem_domain_matches_its_certificate():
    problem = Problem(dimension=2, shape="ball", center=(0.5, -1.0), radius=2.0)
    init = Initialization("normal")
    layers = jax.vmap(lambda key: initialize(key, (2, 50, 1), init))(
        jax.random.split(jax.random.key(4), 2000)
    )
    inactive = jax.vmap(lambda params: certified(params, problem)[0])(layers)
    p = first_layer_inactivity(init, (2, 50, 1), problem.domain())
    n = inactive.size

    assert (
        abs(float(np.mean(inactive)) - p.value)
        <= 4 * math.sqrt(p.value * (1 - p.value) / n) + 4 * p.standard_error
    )


def test_some_first_layer_inactivity_is_one_minus_all_alive():
    p = Probability(3 / 8, "exact")

    assert some_first_layer_inactivity(p, 1).value == pytest.approx(3 / 8)
    assert some_first_layer_inactivity(p, 4).value == pytest.approx(1 - (5 / 8) ** 4)
    estimated = some_first_layer_inactivity(
        Probability(0.25, QUASI_MONTE_CARLO, 0.01), 3
    )
    assert estimated.method == QUASI_MONTE_CARLO
    assert estimated.standard_error == pytest.approx(3 * 0.75**2 * 0.01)


def test_sign_certificate_probability_of_a_deeper_neuron():
    assert sign_certified_probability(Initialization("normal"), 3, 2) == 0.5**4
    assert sign_certified_probability(Initialization("he_normal"), 3, 2) == 0.5**3
    positive = Initialization("normal", "constant", 0.1)
    assert sign_certified_probability(positive, 3, 2) == 0.0


def test_bounds_follow_their_formulas():
    init = Initialization("normal")
    result = bounds(init, (1, 3, 2, 1), 0.0, 1.0)
    p1, p2 = 3 / 8, 0.5**4

    assert [layer.certificate for layer in result.layers] == [
        "support function",
        "sign",
    ]
    assert result.layers[0].neuron.value == pytest.approx(p1)
    assert result.layers[1].neuron.value == pytest.approx(p2)
    assert result.layers[0].some.value == pytest.approx(1 - (1 - p1) ** 3)
    assert result.layers[1].every.value == pytest.approx(p2**2)
    assert result.some_neuron.value == pytest.approx(1 - (1 - p1) ** 3 * (1 - p2) ** 2)
    assert result.collapse.value == pytest.approx(1 - (1 - p1**3) * (1 - p2**2))
    assert result.some_neuron.method == EXACT


def test_an_estimated_first_layer_carries_its_error_into_the_bounds():
    result = bounds(Initialization("uniform"), (2, 3, 3, 1), Box(0.0, 1.0, 2))

    assert result.some_neuron.method == QUASI_MONTE_CARLO
    assert result.some_neuron.standard_error > 0
    assert result.layers[1].neuron.standard_error == 0


@pytest.mark.parametrize("scheme", ["normal", "torch_default", "he_normal"])
def test_bounds_are_monotone_in_width_and_depth(scheme):
    init = Initialization(scheme)
    box = (-1.0, 1.0) if scheme == "torch_default" else (0.0, 1.0)
    # Along the first width, at any depth: more first-layer neurons, more chances.
    for depth in (1, 2, 3, 5):
        previous = -1.0
        for width in (1, 2, 3, 5, 8):
            arch = (1, width, *(2,) * (depth - 1), 1)
            some = bounds(init, arch, *box).layers[0].some.value
            assert some >= previous - 1e-12
            previous = some
    # Along the depth, at any width: every layer adds its own chances.
    for width in (1, 2, 4):
        previous_some, previous_collapse = -1.0, -1.0
        for depth in (1, 2, 3, 6, 10):
            result = bounds(init, (1, *(width,) * depth, 1), *box)
            assert result.some_neuron.value >= previous_some - 1e-12
            assert result.collapse.value >= previous_collapse - 1e-12
            previous_some = result.some_neuron.value
            previous_collapse = result.collapse.value
    # A whole layer certified gets rarer with its width.
    collapses = [bounds(init, (1, w, w, 1), *box).collapse.value for w in (1, 2, 4, 8)]
    assert collapses == sorted(collapses, reverse=True)


def test_wider_deeper_layers_make_the_sign_certificate_rarer():
    # Widening every layer is not monotone for the whole network: the first layer
    # gains chances, but each deeper neuron needs more non-positive weights.
    init = Initialization("torch_default")
    narrow = bounds(init, (1, 3, 3, 3, 1), -1.0, 1.0)
    wide = bounds(init, (1, 5, 5, 5, 1), -1.0, 1.0)

    assert wide.layers[0].some.value > narrow.layers[0].some.value
    assert wide.layers[1].some.value < narrow.layers[1].some.value


@pytest.mark.slow
def test_independence_of_certificates_holds_in_sampled_networks():
    """Certificates of distinct neurons use disjoint parameters: the product
    formulas match the frequencies of networks drawn by ``initialize``."""
    init = Initialization("normal")
    arch = (1, 3, 2, 2, 1)
    problem = Problem()
    draws = 40_000
    layers = jax.vmap(lambda key: certified(initialize(key, arch, init), problem))(
        jax.random.split(jax.random.key(8), draws)
    )
    some = float(np.mean(np.any(np.concatenate(layers, axis=1), axis=1)))
    collapse = float(np.mean(np.any(np.stack([np.all(x, 1) for x in layers]), 0)))
    result = bounds(init, arch, 0.0, 1.0)

    for measured, theory in ((some, result.some_neuron), (collapse, result.collapse)):
        spread = math.sqrt(theory.value * (1 - theory.value) / draws)
        assert abs(measured - theory.value) <= 4 * spread


def _cone(corners: np.ndarray) -> float:
    """The limit of p for normal weights on ``m K`` as ``m`` grows, ``K`` the hull
    of ``corners`` not holding 0: the bias no longer counts, and the neuron is
    inactive iff ``w . x <= 0`` at every corner, by Monte Carlo."""
    rng = np.random.default_rng(2)
    weights = rng.standard_normal((1_000_000, corners.shape[1]))
    return float(np.mean((weights @ corners.T).max(axis=1) <= 0))


HUGE_DOMAINS = [
    # init, domain, value, tolerance; the value a direct computation: on [0, m],
    # p = P(b <= 0, b + w m <= 0) = 1/4 + atan(1/m) / (2 pi); otherwise the limit
    # as the domain grows (or shrinks to a point).
    (Initialization("normal"), Box(0.0, 1e3), 0.25 + math.atan(1e-3) / math.tau, 0),
    (Initialization("normal"), Box(0.0, 1e8), 0.25 + math.atan(1e-8) / math.tau, 0),
    (Initialization("normal"), Box(0.0, 1e155), 0.25, 0),
    (Initialization("normal"), Box(0.0, 1e308), 0.25, 0),
    (Initialization("normal"), Box(1e300, 1e301), 0.5, 1e-15),
    (Initialization("normal"), Box(-1e308, 1e308), 0.0, 1e-300),
    (Initialization("normal"), Ball((0.0,), 1e308), 0.0, 1e-300),
    (Initialization("normal"), Ball((1e308,), 1e308), 0.25, 1e-15),
    (Initialization("normal"), Box(-1e200, 1e200, 2), 0.0, 1e-15),
    (
        Initialization("normal"),
        Box(1e200, 2e200, 2),
        (math.pi - math.atan(2) + math.atan(0.5)) / (2 * math.pi),
        1e-12,
    ),
    (Initialization("normal"), Ball((0.0, 0.0, 0.0), 1e308), 0.0, 1e-12),
    (Initialization("normal"), Box(1e308, 1.7e308, 5), None, None),
    (Initialization("normal"), FiniteSet.of([[1e300, 0], [1e300, 1e300]]), None, 0),
    (Initialization("uniform"), Box(1e300, 1e301), 0.5, 1e-15),
    (Initialization("uniform", scale=1e300), Box(-1e300, 1e300), 0.0, 1e-15),
    (Initialization("torch_default"), Box(-1e200, 1e200, 3), 0.0, 1e-15),
    (Initialization("torch_default"), Box(-1e-200, 1e-200, 3), 0.5, 1e-15),
    (Initialization("torch_default", "constant", -1), Box(-1e-200, 1e-200, 3), 1, 0),
    (Initialization("asymmetric"), Box(0.0, 1e300), 0.0, 1e-15),
    (Initialization("asymmetric"), Box(1e300, 1e301), 0.25, 1e-15),
    (Initialization("asymmetric"), Box(-1e308, -1e307), 0.75, 1e-15),
]


@pytest.mark.parametrize("init, domain, value, tolerance", HUGE_DOMAINS)
def test_inactivity_on_huge_domains_is_finite_and_tends_to_its_limit(
    init, domain, value, tolerance
):
    p = first_layer_inactivity(init, (domain.dimension, 4, 1), domain)

    assert 0 <= p.value <= 1 and math.isfinite(p.standard_error)
    if isinstance(domain, FiniteSet):
        # The hull of the points seen from 0: an angle of pi/4 in the plane.
        assert p.method == EXACT
        assert p.value == pytest.approx((math.pi - math.pi / 4) / (2 * math.pi))
    elif value is None:
        corners = np.array(list(itertools.product((1.0, 1.7), repeat=5)))
        assert p.method == QUASI_MONTE_CARLO
        assert abs(p.value - _cone(corners)) <= 4.5 * math.hypot(5e-4, p.standard_error)
    else:
        assert p.value == pytest.approx(value, rel=1e-12, abs=tolerance)


def test_the_stable_one_dimensional_forms_match_the_old_ones():
    # Sheppard's formula with the variances, and the uniform integral, where they
    # do not overflow.
    for low, high in ((0.0, 1.0), (-1.0, 2.0), (0.5, 3.0), (-4.0, -1.0), (-2.0, 0.0)):
        normal = first_layer_inactivity(Initialization("normal"), (1, 4, 1), low, high)
        v1, v2, c = 1 + low**2, 1 + high**2, 1 + low * high
        sheppard = 0.25 + math.asin(c / math.sqrt(v1 * v2)) / (2 * math.pi)
        assert normal.value == pytest.approx(sheppard, abs=1e-15)
        uniform = first_layer_inactivity(
            Initialization("uniform", scale=2.0), (1, 4, 1), low, high
        )
        fraction, error = neuron_monte_carlo(
            Initialization("uniform", scale=2.0), Box(low, high)
        )
        assert abs(fraction - uniform.value) <= 4.5 * error


def test_neuron_inactivity_is_cached_per_laws_and_domain():
    first = neuron_inactivity(Law("uniform", 1.0), Law("normal", 1.0), Box(0.0, 1.0, 3))
    again = neuron_inactivity(Law("uniform", 1.0), Law("normal", 1.0), Box(0.0, 1.0, 3))

    assert first is again
