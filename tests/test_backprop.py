import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relutrap.backprop import loss_activity_gradient
from relutrap.init import Initialization, initialize
from relutrap.networks import hidden_preactivations, realization_with_activity


def _autodiff(params, inputs, targets):
    def loss(params):
        outputs, activity = realization_with_activity(params, inputs)
        errors = outputs - targets
        return jnp.mean(errors * errors), activity

    (value, activity), gradient = jax.value_and_grad(loss, has_aux=True)(params)
    return value, activity, gradient


@pytest.mark.parametrize(
    "arch", [(1, 3, 1), (2, 5, 4, 1), (3, 16, 16, 1), (1, 8, 2, 3, 1)]
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hand_gradient_equals_autodiff(arch, dtype):
    with jax.enable_x64(dtype == "float64"):
        key = jax.random.key(len(arch))
        params = initialize(key, arch, Initialization(), jnp.dtype(dtype))
        inputs = jax.random.uniform(jax.random.key(1), (37, arch[0]), dtype)
        targets = jnp.sin(3 * inputs.sum(axis=1))

        value, activity, gradient = jax.jit(loss_activity_gradient)(
            params, inputs, targets
        )
        expected = _autodiff(params, inputs, targets)
        preactivations = hidden_preactivations(params, inputs)

    rtol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(value, expected[0], rtol=rtol)
    for mine, theirs in zip(activity, expected[1]):
        np.testing.assert_array_equal(mine, theirs)
    for mine, theirs in zip(jax.tree.leaves(gradient), jax.tree.leaves(expected[2])):
        assert mine.dtype == theirs.dtype
        np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=rtol * 1e-2)
    # Some pre-activation is <= 0, so the ReLU's mask was exercised.
    assert any(bool(np.any(np.asarray(z) <= 0)) for z in preactivations)


def test_an_inactive_neuron_passes_back_zero_even_from_a_non_finite_loss():
    weights = jnp.array([[1.0, -1.0]])
    params = ((weights, jnp.zeros(2)), (jnp.array([[1e30], [1.0]]), jnp.zeros(1)))
    inputs = jnp.linspace(0.0, 1.0, 8)[:, None]
    targets = jnp.full(8, -1e30)

    value, activity, gradient = loss_activity_gradient(params, inputs, targets)

    assert not np.isfinite(value)
    np.testing.assert_array_equal(activity[0], [True, False])
    (first_weights, first_bias), _ = gradient
    assert first_weights[0, 1] == 0 and first_bias[1] == 0
