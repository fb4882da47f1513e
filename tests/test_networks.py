import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relutrap.networks import (
    architecture,
    depth,
    hidden_preactivations,
    hidden_widths,
    parameter_count,
    realization,
    realization_with_activity,
)


def random_params(rng, arch, dtype):
    return tuple(
        (
            jnp.asarray(rng.standard_normal((fan_in, fan_out)), dtype),
            jnp.asarray(rng.standard_normal(fan_out), dtype),
        )
        for fan_in, fan_out in zip(arch, arch[1:])
    )


def numpy_forward(params, inputs):
    """The realization written out in float64 NumPy, layer by layer."""
    activations = np.asarray(inputs, np.float64)
    for weights, bias in params[:-1]:
        preactivation = activations @ np.asarray(weights) + np.asarray(bias)
        activations = np.where(preactivation > 0, preactivation, 0.0)
    weights, bias = params[-1]
    return (activations @ np.asarray(weights) + np.asarray(bias))[:, 0]


def test_architecture_shape_helpers():
    arch = architecture(2, [5, 4])

    assert arch == (2, 5, 4, 1)
    assert depth(arch) == 2
    assert hidden_widths(arch) == (5, 4)
    assert parameter_count(arch) == 3 * 5 + 6 * 4 + 5 * 1


@pytest.mark.parametrize("dimension, hidden", [(0, [3]), (1, [0]), (1, [])])
def test_architecture_rejects_empty_layers(dimension, hidden):
    with pytest.raises(ValueError):
        architecture(dimension, hidden)


def test_relu_derivative_at_zero_is_zero():
    # Neuron 0 has zero incoming weights and zero bias: its pre-activation is exactly
    # 0 on every input.  Neuron 1 is active on every input.
    params = (
        (jnp.array([[0.0, 1.0]]), jnp.array([0.0, 0.5])),
        (jnp.array([[2.0], [3.0]]), jnp.array([0.1])),
    )
    inputs = jnp.linspace(-1.0, 1.0, 9)[:, None] * jnp.array([[0.4]]) + 0.5

    gradient = jax.grad(lambda p: jnp.sum(realization(p, inputs)))(params)
    (first_weights, first_bias), (second_weights, _) = gradient

    assert first_bias[0] == 0.0
    assert first_weights[0, 0] == 0.0
    assert second_weights[0, 0] == 0.0
    assert first_bias[1] != 0.0
    assert second_weights[1, 0] != 0.0


def test_realization_matches_numpy_forward_pass_in_float64():
    rng = np.random.default_rng(0)
    arch = (3, 7, 5, 4, 1)
    inputs_np = rng.uniform(-2.0, 2.0, (50, 3))

    with jax.enable_x64(True):
        params = random_params(rng, arch, jnp.float64)
        inputs = jnp.asarray(inputs_np, jnp.float64)
        outputs = realization(params, inputs)
        with_activity, activity = realization_with_activity(params, inputs)
        preactivations = hidden_preactivations(params, inputs)
        expected = numpy_forward(params, inputs_np)
        preactivations = [np.asarray(layer) for layer in preactivations]

    assert outputs.dtype == jnp.float64
    assert outputs.shape == (50,)
    np.testing.assert_allclose(outputs, expected, rtol=1e-12)
    np.testing.assert_array_equal(with_activity, outputs)
    assert [layer.shape for layer in preactivations] == [(50, 7), (50, 5), (50, 4)]
    for active, preactivation in zip(activity, preactivations):
        np.testing.assert_array_equal(active, np.any(preactivation > 0, axis=0))
