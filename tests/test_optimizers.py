import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from relutrap import optimizers

STEPS = 200
SHAPES = ((3, 4), (4,))
SIZES = tuple(int(np.prod(shape)) for shape in SHAPES)
UNSIGNED = {"float32": np.uint32, "float64": np.uint64}


@functools.cache
def trainer(name: str, dtype: str):
    """A jitted loop applying ``STEPS`` given gradients with the named method.

    Returns the final parameters and, for a look-ahead method, the offsets of every
    step.
    """
    method = optimizers.make(name, 0.05)

    def step(carry, inputs):
        params, state = carry
        gradient, n = inputs
        offset = (
            method.lookahead(state)
            if method.lookahead is not None
            else jax.tree.map(jnp.zeros_like, params)
        )
        updates, state = method.update(gradient, state, n)
        params = jax.tree.map(jnp.add, params, updates)
        return (params, state), offset

    def train(params, gradients):
        steps = jnp.arange(1, STEPS + 1, dtype=jnp.int32)
        (params, _), offsets = jax.lax.scan(
            step, (params, method.init(params)), (gradients, steps)
        )
        return params, offsets

    return jax.jit(train)


def split(flat: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cut an array whose last axis has ``sum(SIZES)`` entries into the leaves."""
    pieces = np.split(flat, np.cumsum(SIZES)[:-1], axis=-1)
    return tuple(
        piece.reshape(*flat.shape[:-1], *shape) for piece, shape in zip(pieces, SHAPES)
    )


def train_with_zero_coordinates(name, dtype, zero, seed, scale):
    """Train from random parameters with gradients that vanish where ``zero``."""
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(sum(SIZES)).astype(dtype)
    gradients = rng.standard_normal((STEPS, sum(SIZES))) * scale
    gradients = np.where(zero, 0.0, gradients).astype(dtype)

    with jax.enable_x64(dtype == "float64"):
        final, offsets = trainer(name, dtype)(split(start), split(gradients))
        final = np.concatenate([np.asarray(leaf).ravel() for leaf in final])
        offsets = np.concatenate(
            [np.asarray(leaf).reshape(STEPS, -1) for leaf in offsets], axis=1
        )
    return start, final, offsets


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(optimizers.OPTIMIZERS))
@settings(max_examples=25, deadline=None)
@given(
    zero=arrays(np.bool_, (sum(SIZES),)),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-2, 1.0, 1e3]),
)
def test_zero_gradient_coordinates_never_move(name, dtype, zero, seed, scale):
    start, final, offsets = train_with_zero_coordinates(name, dtype, zero, seed, scale)
    unsigned = UNSIGNED[dtype]

    assert final.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(
        final[zero].view(unsigned), start[zero].view(unsigned)
    )
    assert np.all(np.isfinite(final[zero]))
    assert np.all(offsets[:, zero] == 0)
    # The test is not vacuous: every coordinate with gradients moved.
    assert np.all(final[~zero] != start[~zero])


GRADIENTS = (0.5, -1.5, 2.0)
LEARNING_RATE = 0.1
SETTINGS = {"alpha": 0.8, "beta": 0.95, "epsilon": 1e-3}


def reference_updates(name: str, gradients, gamma, alpha, beta, epsilon):
    """Updates ``Theta_n - Theta_{n-1}`` of the first steps, in float64 NumPy, from the
    update rules stated in the docstrings of relutrap.optimizers."""
    m = v = s = u = w = 0.0
    updates = []
    for n, g in enumerate(gradients, start=1):
        m = alpha * m + (1 - alpha) * g
        v = beta * v + (1 - beta) * g**2
        if name == "sgd":
            update = -gamma * g
        elif name in ("momentum", "nesterov"):
            update = -gamma * m
        elif name == "adagrad":
            s = s + g**2
            update = -gamma * g / (epsilon + np.sqrt(s))
        elif name == "rmsprop":
            update = -gamma * g / (epsilon + np.sqrt(v))
        elif name == "adam":
            update = (
                -gamma * (m / (1 - alpha**n)) / (epsilon + np.sqrt(v / (1 - beta**n)))
            )
        elif name == "adamax":
            u = max(beta * u, abs(g))
            update = -gamma * m / ((1 - alpha**n) * (epsilon + u))
        elif name == "amsgrad":
            w = max(w, v / (1 - beta**n))
            update = -gamma * (m / (1 - alpha**n)) / (epsilon + np.sqrt(w))
        elif name == "nadam":
            corrected = alpha * m / (1 - alpha ** (n + 1)) + (1 - alpha) * g / (
                1 - alpha**n
            )
            update = -gamma * corrected / (epsilon + np.sqrt(v / (1 - beta**n)))
        updates.append(update)
    return np.array(updates)


@pytest.mark.parametrize("name", list(optimizers.OPTIMIZERS))
def test_first_updates_match_the_documented_rule(name):
    settings_of_method = {
        key: value
        for key, value in SETTINGS.items()
        if key in optimizers.hyperparameters(name)
    }
    written_out = {"alpha": 0.9, "beta": 0.999, "epsilon": 1e-8, **settings_of_method}
    expected = reference_updates(name, GRADIENTS, LEARNING_RATE, **written_out)

    with jax.enable_x64(True):
        method = optimizers.make(name, LEARNING_RATE, **settings_of_method)
        state = method.init(jnp.zeros((), jnp.float64))
        updates = []
        for n, g in enumerate(GRADIENTS, start=1):
            update, state = method.update(
                jnp.asarray(g, jnp.float64), state, jnp.asarray(n, jnp.int32)
            )
            assert update.dtype == jnp.float64
            assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(state))
            updates.append(float(update))

    np.testing.assert_allclose(updates, expected, rtol=1e-12)


def test_nesterov_looks_ahead_along_the_previous_average():
    alpha = 0.8
    with jax.enable_x64(True):
        method = optimizers.make("nesterov", LEARNING_RATE, alpha=alpha)
        state = method.init(jnp.zeros((), jnp.float64))
        offsets = []
        for n, g in enumerate(GRADIENTS, start=1):
            offsets.append(float(method.lookahead(state)))
            _, state = method.update(
                jnp.asarray(g, jnp.float64), state, jnp.asarray(n, jnp.int32)
            )

    averages = [0.0]
    for g in GRADIENTS[:-1]:
        averages.append(alpha * averages[-1] + (1 - alpha) * g)
    expected = [-LEARNING_RATE * alpha * average for average in averages]
    np.testing.assert_allclose(offsets, expected, rtol=1e-12, atol=0)
    assert optimizers.make("adam", LEARNING_RATE).lookahead is None


def test_hyperparameters_list_the_method_defaults():
    assert optimizers.hyperparameters("sgd") == {}
    assert optimizers.hyperparameters("adam") == {
        "alpha": 0.9,
        "beta": 0.999,
        "epsilon": 1e-8,
    }
    assert set(optimizers.hyperparameters("rmsprop")) == {"beta", "epsilon"}


def test_make_refuses_unknown_methods_and_settings():
    with pytest.raises(ValueError, match="adam"):
        optimizers.make("adamw", 0.1)
    with pytest.raises(ValueError, match="momentum"):
        optimizers.make("adam", 0.1, momentum=0.9)
