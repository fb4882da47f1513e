import functools
import math

import jax
import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

import relutrap
from relutrap import engine
from relutrap.domains import Ball, Box, FiniteSet
from relutrap.inactivity import certified
from relutrap.init import Initialization, asymmetric_layer, initialize
from relutrap.problems import Problem
from relutrap.theory import bounds, first_layer_inactivity, sign_certified_probability

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


def _asymmetric_by_quadrature(low: float, high: float) -> float:
    """p of the asymmetric scheme on [low, high] from its definition: the Beta(2, 1)
    entry is the weight or the bias with probability 1/2 each, the other entry
    N(0, 3/2), and the neuron is inactive iff b + max(w low, w high) <= 0."""
    s = math.sqrt(1.5)

    def weight_entry(w):  # density 2 w of the weight, the bias normal
        return 2 * w * norm.cdf(-max(w * low, w * high) / s)

    def bias_entry(w):  # the weight normal, P(B <= x) = clip(x, 0, 1)^2
        return norm.pdf(w, scale=s) * min(max(-max(w * low, w * high), 0.0), 1.0) ** 2

    positive = integrate.quad(weight_entry, 0, 1, epsabs=1e-13)[0]
    # N(0, 3/2) beyond 12 s is below 1e-32; the integrand has kinks at 0 and 1/t.
    end = 12 * s
    kinks = [0.0] + [k for t in (low, high) if t for k in (1 / t, -1 / t)]
    kinks = [k for k in kinks if abs(k) < end]
    symmetric = integrate.quad(
        bias_entry, -end, end, points=kinks, limit=200, epsabs=1e-13
    )[0]
    return (positive + symmetric) / 2


@functools.cache
def _asymmetric_neurons(n: int = 1_000_000):
    with jax.enable_x64(True):
        weights, bias = asymmetric_layer(jax.random.key(7), 1, n, np.float64)
    return np.asarray(weights)[0], np.asarray(bias)


INTERVALS = [
    (0.0, 1.0),  # the interval holds 0: only the weight entry leaves it inactive
    (-1.0, 2.0),
    (-2.0, 0.0),
    (0.5, 2.0),  # away from 0, a positive bias entry can be outweighed
    (-3.0, -0.2),
    (1e-3, 1e3),
    (3.0, 3.0 + 1e-9),
]


@pytest.mark.parametrize("low, high", INTERVALS)
def test_asymmetric_inactivity_on_an_interval_is_exact(low, high):
    p = first_layer_inactivity(ASYMMETRIC, (1, 4, 1), low, high)
    weights, bias = _asymmetric_neurons()
    inactive = bias + np.maximum(weights * low, weights * high) <= 0
    fraction, n = float(np.mean(inactive)), inactive.size

    assert p.method == "exact" and p.standard_error == 0
    assert p.value == pytest.approx(_asymmetric_by_quadrature(low, high), abs=1e-10)
    assert abs(fraction - p.value) <= 4.5 * math.sqrt(p.value * (1 - p.value) / n)


def test_asymmetric_inactivity_on_other_one_dimensional_domains():
    on_box = first_layer_inactivity(ASYMMETRIC, (1, 4, 1), 0.2, 0.9)
    ball = Ball((0.55,), 0.35)
    points = FiniteSet.of([[0.2], [0.9], [0.5]])
    single = FiniteSet.of([[0.7]])

    for domain in (ball, points):
        found = first_layer_inactivity(ASYMMETRIC, (1, 4, 1), domain)
        assert found.method == "exact"
        assert found.value == pytest.approx(on_box.value, abs=1e-15)
    assert first_layer_inactivity(ASYMMETRIC, (1, 4, 1), single).value == pytest.approx(
        _asymmetric_by_quadrature(0.7, 0.7), abs=1e-10
    )
    # The README's value on [0, 1], against 0.375 for the standard normal scheme.
    assert first_layer_inactivity(ASYMMETRIC, (1, 4, 1), 0.0, 1.0).value == (
        pytest.approx(0.148173, abs=1e-6)
    )


def test_asymmetric_inactivity_in_higher_dimension_is_drawn_from_the_scheme():
    p = first_layer_inactivity(ASYMMETRIC, (2, 4, 1), Box(0.0, 1.0, 2))
    with jax.enable_x64(True):
        weights, bias = asymmetric_layer(jax.random.key(9), 2, 1_000_000, np.float64)
    weights, bias = np.asarray(weights).T, np.asarray(bias)
    fraction = np.mean(bias + np.maximum(weights, 0).sum(axis=1) <= 0)

    assert p.method == "monte carlo" and p.standard_error > 0
    spread = math.sqrt(p.value * (1 - p.value) / len(bias))
    assert abs(fraction - p.value) <= 4.5 * math.hypot(spread, p.standard_error)
    assert p.value < first_layer_inactivity(ASYMMETRIC, (1, 4, 1), 0.0, 1.0).value


def _certified(init: Initialization, arch, networks: int):
    """The certified neurons per hidden layer of networks drawn by ``initialize``."""
    keys = jax.random.split(jax.random.key(3), networks)
    return jax.vmap(lambda key: certified(initialize(key, arch, init), Problem()))(keys)


def test_no_deeper_neuron_of_the_asymmetric_scheme_passes_the_sign_test():
    arch = (1, 4, 4, 3, 1)
    layers = _certified(ASYMMETRIC, arch, 5_000)
    normal = _certified(Initialization("normal"), arch, 5_000)
    result = bounds(ASYMMETRIC, arch, 0.0, 1.0)

    for fan_in in (1, 4, 50):
        assert sign_certified_probability(ASYMMETRIC, fan_in, 3) == 0.0
    for layer, sampled in zip(result.layers[1:], layers[1:]):
        assert layer.neuron.value == 0.0 and layer.neuron.method == "exact"
        assert layer.some.value == 0.0 and layer.every.value == 0.0
        assert not np.any(sampled)
    # Drawn the same way, the normal scheme's neurons of layer 2 pass it at 2^-5.
    spread = math.sqrt(0.5**5 * (1 - 0.5**5) / normal[1].size)
    assert float(np.mean(normal[1])) == pytest.approx(0.5**5, abs=4.5 * spread)
    assert result.some_neuron.value == pytest.approx(result.layers[0].some.value)
    assert result.collapse.value == pytest.approx(result.layers[0].every.value)


@pytest.mark.slow
def test_the_summary_takes_the_deeper_layers_of_the_asymmetric_scheme_as_zero(
    tiny_spec, tmp_path
):
    from relutrap.analysis import rates

    part = tiny_spec["parts"][0]
    del part["width"]
    part.update(hidden=[[2, 2], [2, 2, 2]], steps=2, init={"scheme": "asymmetric"})
    records = relutrap.study(tiny_spec, out=tmp_path, runs=4)
    p = first_layer_inactivity(ASYMMETRIC, (1, 2, 1), 0.0, 1.0).value

    for record in records:
        assert record["p_method"] == "exact"
        assert record["theory_some_certified_inactive"] == pytest.approx(
            1 - (1 - p) ** 2
        )
        assert record["theory_certified_collapse"] == pytest.approx(p**2)
        # No run has a certified neuron beyond its first layer.
        some = record["some_certified_inactive"]["count"]
        assert some == record["some_first_layer_inactive"]["count"]
    depth_fits = [fit for fit in rates(records) if fit["axis"] == "depth"]
    theory = {fit["event"]: fit["theory_slope"] for fit in depth_fits}
    assert theory["some_certified_inactive"] == pytest.approx(0.0, abs=1e-12)
    assert theory["collapsed"] == pytest.approx(0.0, abs=1e-12)


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
