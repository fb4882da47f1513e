import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relutrap import inactivity
from relutrap.networks import hidden_preactivations, realization
from relutrap.problems import Problem, evaluation_inputs

BOXES = [(0.0, 1.0), (-1.0, 1.0), (-2.0, -0.5), (0.5, 3.0)]


def box_grid(dimension: int, low: float, high: float, points: int) -> np.ndarray:
    """A regular grid of the box that includes all of its vertices, ``(n, d)``."""
    axis = np.linspace(low, high, points)
    return np.array(list(itertools.product(axis, repeat=dimension)))


@pytest.mark.parametrize("dimension", [1, 2])
@pytest.mark.parametrize("low, high", BOXES)
def test_first_layer_certificate_is_the_maximum_over_the_box(dimension, low, high):
    rng = np.random.default_rng([dimension, BOXES.index((low, high))])
    weights = rng.standard_normal((dimension, 400))
    bias = rng.standard_normal(400) - 1.0
    grid = box_grid(dimension, low, high, 201 if dimension == 1 else 61)
    inactive_on_grid = np.max(grid @ weights + bias, axis=0) <= 0

    with jax.enable_x64(True):
        certified = inactivity.first_layer_certified(
            jnp.asarray(weights), jnp.asarray(bias), low, high
        )
        certified = np.asarray(certified)

    assert certified.shape == (400,)
    assert 0 < inactive_on_grid.sum() < 400
    np.testing.assert_array_equal(certified, inactive_on_grid)


def test_sign_certificate_holds_for_any_nonnegative_layer_input():
    rng = np.random.default_rng(1)
    weights = rng.standard_normal((5, 6))
    bias = rng.standard_normal(6)
    # Neurons 0 and 3: non-positive bias and weights.  Neuron 5: one positive weight.
    weights[:, [0, 3, 5]] = -np.abs(weights[:, [0, 3, 5]])
    bias[[0, 3, 5]] = -np.abs(bias[[0, 3, 5]])
    bias[3] = 0.0
    weights[2, 5] = 0.1
    weights[:, [1, 2, 4]] = np.abs(weights[:, [1, 2, 4]])

    certified = inactivity.sign_certified(jnp.asarray(weights), jnp.asarray(bias))

    np.testing.assert_array_equal(certified, [True, False, False, True, False, False])
    layer_inputs = np.abs(rng.standard_normal((2000, 5))) * 10.0
    preactivation = layer_inputs @ weights + bias
    assert np.all(preactivation[:, np.asarray(certified)] <= 0)


def test_deeper_certificate_implies_observed_inactivity():
    rng = np.random.default_rng(2)
    params = [
        (rng.standard_normal((2, 6)), rng.standard_normal(6)),
        (rng.standard_normal((6, 6)), rng.standard_normal(6)),
        (rng.standard_normal((6, 1)), rng.standard_normal(1)),
    ]
    params[1][0][:, :2] = -np.abs(params[1][0][:, :2])
    params[1][1][:2] = -np.abs(params[1][1][:2])
    params = tuple(
        (jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32)) for w, b in params
    )
    problem = Problem(dimension=2, low=-3.0, high=3.0)

    certified = inactivity.certified(params, problem)
    inputs = jnp.asarray(rng.uniform(-3.0, 3.0, (4000, 2)), jnp.float32)
    observed = inactivity.observed(params, inputs)

    assert len(certified) == 2
    assert np.all(np.asarray(certified[1])[:2])
    for certain, seen in zip(certified, observed):
        assert np.all(np.asarray(seen)[np.asarray(certain)])


def random_networks(rng, arch, count):
    """``count`` networks, stacked, with normal weights and biases shifted down so that
    some neurons are inactive."""
    return tuple(
        (
            jnp.asarray(rng.standard_normal((count, fan_in, fan_out)), jnp.float32),
            jnp.asarray(rng.standard_normal((count, fan_out)) - 0.5, jnp.float32),
        )
        for fan_in, fan_out in zip(arch, arch[1:])
    )


@pytest.mark.parametrize("dimension", [1, 2])
def test_bounded_includes_certified_and_is_sound(dimension):
    rng = np.random.default_rng(dimension)
    problem = Problem(dimension=dimension, low=-1.0, high=2.0, evaluation_size=128)
    networks = random_networks(rng, (dimension, 6, 6, 1), 64)
    evaluation = evaluation_inputs(problem)
    cells = inactivity.partition(problem)
    inputs = jnp.asarray(rng.uniform(-1.0, 2.0, (4096, dimension)), jnp.float32)

    @jax.jit
    @jax.vmap
    def inspect(params):
        never_positive = tuple(
            jnp.all(preactivation <= 0, axis=0)
            for preactivation in hidden_preactivations(params, inputs)
        )
        return inactivity.census(params, problem, evaluation, cells), never_positive

    census, never_positive = jax.device_get(inspect(networks))

    for certified, bounded, observed, inactive_on_samples in zip(
        census.certified, census.bounded, census.observed, never_positive
    ):
        assert certified.any()
        assert np.all(bounded[certified])
        assert np.all(observed[bounded])
        assert np.all(inactive_on_samples[bounded])
    assert not np.array_equal(census.bounded[1], census.certified[1])


def hand_collapsed_network():
    """Layer 2 has negative biases and weights: nothing gets past it."""
    return (
        (jnp.array([[1.0, -2.0, 0.5]]), jnp.array([0.2, 1.0, -0.1])),
        (-jnp.array([[0.3, 1.0], [2.0, 0.1], [0.5, 0.5]]), jnp.array([-0.1, -2.0])),
        (jnp.array([[1.5], [-0.7]]), jnp.array([0.7])),
    )


def test_hand_built_collapsed_network_is_constant_and_frozen():
    params = hand_collapsed_network()
    problem = Problem(low=-1.0, high=1.0, evaluation_size=64)
    inputs = jnp.linspace(-1.0, 1.0, 101)[:, None]

    bounded = inactivity.bounded(params, *inactivity.partition(problem))
    outputs = realization(params, inputs)
    gradient = jax.jit(jax.grad(lambda p: jnp.sum(realization(p, inputs) ** 2)))(params)

    assert bool(inactivity.collapsed(bounded))
    np.testing.assert_array_equal(bounded[1], [True, True])
    np.testing.assert_array_equal(outputs, np.full(101, 0.7, np.float32))
    for weights, bias in gradient[:2]:
        assert not np.any(weights) and not np.any(bias)
    assert gradient[2][1][0] != 0.0


def test_network_with_an_active_neuron_in_every_layer_is_not_collapsed():
    params = hand_collapsed_network()
    params = (params[0], (params[1][0], jnp.array([0.5, -2.0])), params[2])
    problem = Problem(low=-1.0, high=1.0, evaluation_size=64)

    bounded = inactivity.bounded(params, *inactivity.partition(problem))

    assert not bool(inactivity.collapsed(bounded))
