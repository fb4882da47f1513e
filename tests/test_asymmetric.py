import math

import jax
import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

from relutrap import engine
from relutrap.init import Initialization, asymmetric_layer, initialize
from relutrap.theory import first_layer_inactivity

ASYMMETRIC = Initialization("asymmetric")


def test_asymmetric_layer_has_the_law_it_claims():
    fan_in, neurons = 3, 400_000
    with jax.enable_x64(True):
        weights, bias = asymmetric_layer(jax.random.key(0), fan_in, neurons, np.float64)
    vectors = np.vstack([np.asarray(weights), np.asarray(bias)[None, :]])
    s2 = 1.5 / fan_in
    # Every entry is Beta(2, 1) with probability 1/4, else N(0, s2).
    share = 1 / (fan_in + 1)
    error = 5 / math.sqrt(neurons)
    for entry in vectors:
        assert np.mean(entry) == pytest.approx(share * 2 / 3, abs=error)
        assert np.mean(entry**2) == pytest.approx(
            share / 2 + (1 - share) * s2, abs=error
        )
        assert np.mean(entry > 0) == pytest.approx(share + (1 - share) / 2, abs=error)
    # Each neuron has at least one positive entry, and E|v|^2 = 2 (He's value).
    assert np.all(np.any(vectors > 0, axis=0))
    assert np.mean(np.sum(vectors**2, axis=0)) == pytest.approx(2.0, abs=4 * error)
    # The positive entry is Beta(2, 1): P(V <= 1/2 | V drawn from it) = 1/4.  The
    # symmetric part contributes P(0 < N <= 1/2) to P(0 < V <= 1/2).
    within = np.mean((vectors > 0) & (vectors <= 0.5))
    symmetric = norm.cdf(0.5 / math.sqrt(s2)) - 0.5
    assert within == pytest.approx(share / 4 + (1 - share) * symmetric, abs=error)


def test_asymmetric_networks_use_the_scheme_in_hidden_layers_only():
    params = initialize(jax.random.key(1), (2, 5, 5, 1), ASYMMETRIC)
    for weights, bias in params[:-1]:
        vectors = np.vstack([weights, bias[None, :]])
        assert np.all(np.any(vectors > 0, axis=0))
    assert np.all(np.asarray(params[-1][1]) == 0)
    with pytest.raises(ValueError, match="asymmetric"):
        Initialization("asymmetric", bias="zero")


def test_first_layer_inactivity_of_the_asymmetric_scheme_matches_its_integral():
    # On [0, 1] a neuron is inactive iff its positive entry is the weight w and
    # b <= -w: p = (1/2) int_0^1 2 w Phi(-w / s) dw with s^2 = 3/2.
    s = math.sqrt(1.5)
    exact = 0.5 * integrate.quad(lambda w: 2 * w * norm.cdf(-w / s), 0, 1)[0]
    p = first_layer_inactivity(ASYMMETRIC, (1, 4, 1), 0.0, 1.0)
    assert p.method == "monte carlo"
    assert abs(p.value - exact) < 5 * p.standard_error
    normal = first_layer_inactivity(Initialization("normal"), (1, 4, 1), 0.0, 1.0)
    assert p.value < normal.value - 0.2


@pytest.mark.slow
def test_asymmetric_init_lowers_the_measured_first_layer_inactivity(make_cell):
    runs = range(256)
    counts = {}
    for scheme in ("normal", "asymmetric"):
        cell = make_cell(init=Initialization(scheme), hidden=(4,), steps=1)
        outcomes = engine.train_runs(cell, 11, runs)
        counts[scheme] = outcomes.certified_init[:, 0].sum()
        p = first_layer_inactivity(cell.init, cell.architecture, 0.0, 1.0).value
        # The mean count of inactive neurons is 4 p, within 5 standard errors.
        assert counts[scheme] / len(runs) == pytest.approx(
            4 * p, abs=5 * math.sqrt(4 * p * (1 - p) / len(runs))
        )
    assert counts["asymmetric"] < counts["normal"] / 2


def test_a_bias_rule_for_the_asymmetric_scheme_is_a_spec_error(tiny_spec):
    from relutrap.experiment import SpecError, parse_spec

    tiny_spec["parts"][0]["init"] = {"scheme": "asymmetric", "bias": "zero"}
    with pytest.raises(SpecError, match="parts.0.init: bias"):
        parse_spec(tiny_spec)
    tiny_spec["parts"][0]["init"] = {"scheme": "asymmetric"}
    (init,) = parse_spec(tiny_spec).parts[0].init.build()
    assert init.is_asymmetric


def test_asymmetric_inactivity_on_a_data_set_is_drawn_from_the_scheme():
    from relutrap import datasets

    source = datasets.DataSource(dataset="diabetes", max_train=64)
    p = datasets.first_layer_inactivity(ASYMMETRIC, (10, 3), source)
    inputs = datasets.load(source).train_inputs
    with jax.enable_x64(True):
        weights, bias = asymmetric_layer(jax.random.key(5), 10, 200_000, np.float64)
    direct = np.mean((inputs @ np.asarray(weights)).max(axis=0) + np.asarray(bias) <= 0)
    assert abs(p.value - direct) < 5 * (p.standard_error + 1e-3)
    normal = datasets.first_layer_inactivity(Initialization("normal"), (10, 3), source)
    assert p.value != normal.value
