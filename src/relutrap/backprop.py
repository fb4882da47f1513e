"""The mean squared error of a network on a mini-batch and its gradient, by hand.

For one network with parameters ``((W_1, b_1), ..., (W_{L+1}, b_{L+1}))``, inputs
``X`` of shape ``(n, d)`` and targets ``y`` of shape ``(n,)`` the forward pass is

    A_0 = X,    Z_k = A_{k-1} W_k + b_k,    A_k = sigma(Z_k)    (k = 1, ..., L),
    N = A_L W_{L+1} + b_{L+1},    loss = (1 / n) sum_i (N_i - y_i)^2,

and the backward pass, with ``D_{L+1} = (2 / n) (N - y)`` of shape ``(n, 1)``,

    grad W_k = A_{k-1}^T D_k,    grad b_k = sum_i (D_k)_i,
    D_k = sigma'(Z_k) * (D_{k+1} W_{k+1}^T)    (elementwise product).

``sigma'(Z) * G`` is taken as the activation's vector-Jacobian product, so for
:func:`jax.nn.relu` it is ``where(Z > 0, G, 0)``: a neuron whose pre-activation is
``<= 0`` passes back exactly zero, even when ``G`` is not finite.  The result equals
``jax.value_and_grad`` of the same loss up to rounding (the tests compare them);
written out, it lets the engine choose the layouts of the matrix products and skip
work autodiff would do (the gradient with respect to the inputs, the transposes).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from relutrap.networks import Params

Activation = Callable[[jax.Array], jax.Array]

# A product whose inner dimension is at most this (a layer with one or two inputs, or
# the output layer's backward pass) is computed by broadcasting instead of as a matrix
# product, which would leave most of the vector units idle.
_NARROW = 2


def _affine(inputs: jax.Array, weights: jax.Array, bias: jax.Array) -> jax.Array:
    """``inputs @ weights + bias`` for ``(n, i) @ (i, o)``."""
    if weights.shape[0] <= _NARROW:
        total = inputs[:, 0:1] * weights[0]
        for row in range(1, weights.shape[0]):
            total = total + inputs[:, row : row + 1] * weights[row]
        return total + bias
    return inputs @ weights + bias


def _backward(delta: jax.Array, weights: jax.Array) -> jax.Array:
    """``delta @ weights.T`` for ``(n, o) @ (o, i)``."""
    if weights.shape[1] <= _NARROW:
        total = delta[:, 0:1] * weights[:, 0]
        for col in range(1, weights.shape[1]):
            total = total + delta[:, col : col + 1] * weights[:, col]
        return total
    return delta @ weights.T


def _weight_gradient(inputs: jax.Array, delta: jax.Array) -> jax.Array:
    """``inputs.T @ delta`` for ``(i, n) @ (n, o)``."""
    if inputs.shape[1] <= _NARROW:
        rows = [
            jnp.sum(inputs[:, row : row + 1] * delta, axis=0)
            for row in range(inputs.shape[1])
        ]
        return jnp.stack(rows)
    return inputs.T @ delta


def loss_activity_gradient(
    params: Params,
    inputs: jax.Array,
    targets: jax.Array,
    activation: Activation = jax.nn.relu,
) -> tuple[jax.Array, tuple[jax.Array, ...], Params]:
    """The loss, the activity of the hidden neurons and the gradient.

    Args:
        params: parameters of one network.
        inputs: array of shape ``(n, d)``.
        targets: array of shape ``(n,)``.
        activation: the elementwise activation ``sigma`` of the hidden layers.

    Returns:
        the mean squared error (a scalar); per hidden layer a boolean array of shape
        ``(l_k,)``, True where the neuron's pre-activation is positive on at least
        one input; the gradient of the loss, shaped like ``params``.
    """
    layer_inputs = [inputs]
    pullbacks = []
    activity = []
    activations = inputs
    for weights, bias in params[:-1]:
        preactivation = _affine(activations, weights, bias)
        activity.append(jnp.any(preactivation > 0, axis=0))
        activations, pullback = jax.vjp(activation, preactivation)
        layer_inputs.append(activations)
        pullbacks.append(pullback)
    weights, bias = params[-1]
    errors = _affine(activations, weights, bias)[:, 0] - targets
    value = jnp.mean(errors * errors)

    scaled = errors * (jnp.asarray(1, errors.dtype) / errors.shape[0])
    delta = (scaled + scaled)[:, None]
    gradient = []
    for layer in range(len(params) - 1, -1, -1):
        weights, _ = params[layer]
        gradient.append(
            (_weight_gradient(layer_inputs[layer], delta), jnp.sum(delta, axis=0))
        )
        if layer > 0:
            (delta,) = pullbacks[layer - 1](_backward(delta, weights))
    return value, tuple(activity), tuple(reversed(gradient))
