"""Fully connected ReLU networks as pure functions over a parameter pytree.

An *architecture* is the tuple of widths ``(d, l1, ..., lL, 1)``: the input dimension,
the widths of the L hidden layers and the scalar output.  The parameters of a network
are a tuple with one ``(weights, bias)`` pair per affine layer, ``weights`` of shape
``(fan_in, fan_out)`` and ``bias`` of shape ``(fan_out,)``.

The ReLU used here is :func:`jax.nn.relu`, whose derivative at 0 is 0.  The inactivity
certificates in :mod:`relutrap.inactivity` call a neuron inactive when its
pre-activation is ``<= 0``; with this convention such a neuron passes back exactly zero
gradient, which is what makes the certificates permanent.  (``jnp.maximum(z, 0)`` would
pass back 0.5 at ``z == 0`` and break that link.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

Architecture = tuple[int, ...]
Layer = tuple[jax.Array, jax.Array]
Params = tuple[Layer, ...]
Activation = Callable[[jax.Array], jax.Array]

ACTIVATIONS = ("relu", "leaky_relu", "softplus")


def activation(name: str = "relu", negative_slope: float = 0.01) -> Activation:
    """The hidden layers' activation function by name.

    * ``relu``: ``max(z, 0)``, derivative 0 at 0 (:func:`jax.nn.relu`);
    * ``leaky_relu``: ``z`` for ``z >= 0``, ``negative_slope * z`` otherwise;
    * ``softplus``: ``log(1 + exp(z))``.

    Only ReLU has inactive neurons: the derivatives of the other two are positive
    everywhere, so every neuron passes gradient back on every input.
    """
    if name == "relu":
        return jax.nn.relu
    if name == "leaky_relu":
        return functools.partial(jax.nn.leaky_relu, negative_slope=negative_slope)
    if name == "softplus":
        return jax.nn.softplus
    raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")


def architecture(dimension: int, hidden: Sequence[int]) -> Architecture:
    """The widths ``(d, l1, ..., lL, 1)`` of a network with the given hidden widths."""
    widths = (int(dimension), *(int(width) for width in hidden), 1)
    if min(widths) < 1:
        raise ValueError(f"every width must be at least 1, got {widths}")
    if len(widths) < 3:
        raise ValueError("a network needs at least one hidden layer")
    return widths


def depth(arch: Architecture) -> int:
    """The number L of hidden layers."""
    return len(arch) - 2


def hidden_widths(arch: Architecture) -> tuple[int, ...]:
    """The widths ``(l1, ..., lL)`` of the hidden layers."""
    return tuple(arch[1:-1])


def parameter_count(arch: Architecture) -> int:
    """The number of real parameters (weights and biases) of the architecture."""
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(arch, arch[1:]))


def hidden_preactivations(
    params: Params, inputs: jax.Array, sigma: Activation = jax.nn.relu
) -> list[jax.Array]:
    """Pre-activations of every hidden layer.

    Args:
        params: parameters of one network.
        inputs: array of shape ``(n, d)``.

    Returns:
        one array of shape ``(n, l_k)`` per hidden layer k.
    """
    preactivations = []
    activations = inputs
    for weights, bias in params[:-1]:
        preactivation = activations @ weights + bias
        preactivations.append(preactivation)
        activations = sigma(preactivation)
    return preactivations


def realization(
    params: Params, inputs: jax.Array, sigma: Activation = jax.nn.relu
) -> jax.Array:
    """The function the network computes, evaluated at ``inputs`` of shape ``(n, d)``,
    with the activation ``sigma`` in every hidden layer (ReLU by default).

    Returns:
        array of shape ``(n,)``.
    """
    activations = inputs
    for weights, bias in params[:-1]:
        activations = sigma(activations @ weights + bias)
    weights, bias = params[-1]
    return (activations @ weights + bias)[:, 0]


def realization_with_activity(
    params: Params, inputs: jax.Array, sigma: Activation = jax.nn.relu
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """The realization and, per hidden layer, which neurons are active on ``inputs``.

    Returns:
        the outputs, shape ``(n,)``, and per hidden layer a boolean array of shape
        ``(l_k,)`` that is True where the neuron's pre-activation is positive for at
        least one of the inputs.
    """
    activity = []
    activations = inputs
    for weights, bias in params[:-1]:
        preactivation = activations @ weights + bias
        activity.append(jnp.any(preactivation > 0, axis=0))
        activations = sigma(preactivation)
    weights, bias = params[-1]
    return (activations @ weights + bias)[:, 0], tuple(activity)
