import functools
import math

import jax
import numpy as np
import pytest
from scipy.stats import norm

from relutrap.inactivity import first_layer_certified
from relutrap.init import Initialization, initialize
from relutrap.theory import (
    MONTE_CARLO_SAMPLES,
    Probability,
    first_layer_inactivity,
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


def test_two_dimensional_inactivity_is_estimated_by_monte_carlo():
    init = Initialization("normal")
    p = first_layer_inactivity(init, (2, WIDTH, 1), 0.0, 1.0)
    fraction, n = monte_carlo(init, 2, 0.0, 1.0)

    assert p.method == "monte carlo"
    expected_error = math.sqrt(p.value * (1 - p.value) / MONTE_CARLO_SAMPLES)
    assert p.standard_error == pytest.approx(expected_error)
    assert 0 < p.standard_error < 1e-3
    combined = math.sqrt(p.standard_error**2 + p.value * (1 - p.value) / n)
    assert abs(fraction - p.value) <= 4 * combined
    # A neuron inactive on [0, 1]^2 is inactive on [0, 1] x {0}: p is below the 1-d 3/8.
    assert p.value < 3 / 8


def test_some_first_layer_inactivity_is_one_minus_all_alive():
    p = Probability(3 / 8, "exact")

    assert some_first_layer_inactivity(p, 1).value == pytest.approx(3 / 8)
    assert some_first_layer_inactivity(p, 4).value == pytest.approx(1 - (5 / 8) ** 4)
    estimated = some_first_layer_inactivity(Probability(0.25, "monte carlo", 0.01), 3)
    assert estimated.method == "monte carlo"
    assert estimated.standard_error == pytest.approx(3 * 0.75**2 * 0.01)
