"""Certified, bounded and observed inactivity of hidden neurons.

A hidden neuron is *inactive* on the domain when its pre-activation is ``<= 0`` at
every input of the domain.  Three tests, from strongest to weakest claim:

* **certified**, a proof that stays true for the whole training:

  - first layer: ``x -> w . x + b`` is inactive on the domain iff
    ``b + h(w) <= 0``, ``h`` the support function of the domain (see
    :mod:`relutrap.domains`).  Over a box ``[low, high]^d`` the maximum is attained
    at a vertex, ``h(w) = sum_i max(w_i low, w_i high)``; over a ball,
    ``h(w) = c . w + r |w|``; Gaussian inputs have unbounded support, so only a
    neuron with ``w = 0`` and ``b <= 0`` is inactive on it.
    Its incoming parameters then get zero gradient on every input, so an optimizer
    of the theorem's class never moves them and the certificate holds forever.
  - deeper layers: bias ``<= 0`` and all incoming weights ``<= 0``.  The inputs of
    the layer are outputs of ReLUs, hence ``>= 0``, so the pre-activation is ``<= 0``
    whatever the layers below do, and again no gradient ever reaches the neuron.

* **bounded**: interval bound propagation (IBP) through the network, on the cells of a
  partition of the domain (the evaluation grid's cells in dimension 1, the whole box
  otherwise; a ball is covered by its bounding box).  The bound is sound, so a
  bounded neuron is inactive on the whole domain at that moment; for a single neuron
  of a deeper layer this need not last, because the layers below it move.  Every
  certified neuron counts as bounded too.  Gaussian inputs are unbounded: no
  interval holds them, so there the bounded neurons are the certified ones.

* **observed**: the pre-activation is ``<= 0`` at every evaluation input.

A network is *collapsed* when some hidden layer has all of its neurons bounded
inactive.  This is permanent as well: no input reaches beyond that layer, so every
parameter at or below it receives zero gradient on every input and never moves, and
the network computes a constant for the rest of training.  Every certified collapse
(all neurons of a layer certified) is a bounded one.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from relutrap.networks import Params, hidden_preactivations
from relutrap.problems import Problem


def first_layer_certified(
    weights: jax.Array, bias: jax.Array, low: float, high: float
) -> jax.Array:
    """Which first-layer neurons are inactive on the box ``[low, high]^d``.

    Args:
        weights: shape ``(d, l1)``; bias: shape ``(l1,)``.

    Returns:
        boolean array of shape ``(l1,)``.
    """
    largest = bias + jnp.sum(jnp.maximum(weights * low, weights * high), axis=0)
    return largest <= 0


def first_layer_certified_on(
    weights: jax.Array, bias: jax.Array, problem: Problem
) -> jax.Array:
    """Which first-layer neurons are inactive on the problem's domain, ``(l1,)``."""
    if problem.shape == "ball":
        center = jnp.asarray(problem.center_vector(), weights.dtype)
        largest = (
            bias + center @ weights + problem.radius * jnp.linalg.norm(weights, axis=0)
        )
        return largest <= 0
    if problem.shape == "gaussian":
        return jnp.all(weights == 0, axis=0) & (bias <= 0)
    return first_layer_certified(weights, bias, problem.low, problem.high)


def sign_certified(weights: jax.Array, bias: jax.Array) -> jax.Array:
    """Which neurons of a deeper layer have bias ``<= 0`` and all incoming weights
    ``<= 0``; shape ``(fan_out,)``."""
    return (bias <= 0) & jnp.all(weights <= 0, axis=0)


def certified(params: Params, problem: Problem) -> tuple[jax.Array, ...]:
    """Certified inactive neurons, one boolean array per hidden layer."""
    (first_weights, first_bias), *deeper = params[:-1]
    first = first_layer_certified_on(first_weights, first_bias, problem)
    return (first, *(sign_certified(weights, bias) for weights, bias in deeper))


def partition(problem: Problem, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """Lower and upper corners, each ``(cells, d)``, of the cells bounds run on.

    For Gaussian inputs, whose support no box holds, the box ``center +- radius``
    is returned and not used (see :func:`census`)."""
    if problem.dimension == 1:
        low, high = problem.interval()
        n = problem.evaluation_size
        edges = jnp.linspace(low, high, n + 1, dtype=dtype)
        return edges[:-1, None], edges[1:, None]
    if problem.shape == "box":
        shape = (1, problem.dimension)
        return jnp.full(shape, problem.low, dtype), jnp.full(shape, problem.high, dtype)
    center = jnp.asarray(problem.center_vector(), dtype)[None, :]
    return center - problem.radius, center + problem.radius


def bounded(
    params: Params, lower: jax.Array, upper: jax.Array
) -> tuple[jax.Array, ...]:
    """Neurons that interval bounds prove inactive on every cell ``[lower, upper]``.

    Args:
        lower, upper: corners of the cells, each of shape ``(cells, d)``.

    Returns:
        one boolean array of shape ``(l_k,)`` per hidden layer.
    """
    inactive = []
    for weights, bias in params[:-1]:
        positive, negative = jnp.maximum(weights, 0), jnp.minimum(weights, 0)
        upper_pre = upper @ positive + lower @ negative + bias
        lower_pre = lower @ positive + upper @ negative + bias
        inactive.append(jnp.all(upper_pre <= 0, axis=0))
        lower, upper = jax.nn.relu(lower_pre), jax.nn.relu(upper_pre)
    return tuple(inactive)


def observed(params: Params, inputs: jax.Array) -> tuple[jax.Array, ...]:
    """Neurons whose pre-activation is ``<= 0`` on all of ``inputs`` ``(n, d)``."""
    return tuple(
        jnp.all(preactivation <= 0, axis=0)
        for preactivation in hidden_preactivations(params, inputs)
    )


class Census(NamedTuple):
    """Inactive neurons of one network, one boolean array per hidden layer."""

    certified: tuple[jax.Array, ...]
    bounded: tuple[jax.Array, ...]
    observed: tuple[jax.Array, ...]


def census(
    params: Params,
    problem: Problem,
    inputs: jax.Array,
    cells: tuple[jax.Array, jax.Array],
) -> Census:
    """Certified, bounded and observed inactive neurons of one network.

    Args:
        inputs: the evaluation inputs, ``(n, d)``.
        cells: the partition from :func:`partition`.
    """
    proven = certified(params, problem)
    if problem.shape == "gaussian":
        interval = proven
    else:
        interval = tuple(
            by_bounds | by_certificate
            for by_bounds, by_certificate in zip(bounded(params, *cells), proven)
        )
    return Census(proven, interval, observed(params, inputs))


def finite_census(params: Params, inputs: jax.Array) -> Census:
    """The census of one network on a finite training set ``(n, d)``.

    On a finite set the test "pre-activation ``<= 0`` at every input" is exact, so
    the bounded and observed census are the same, exact one, for every layer.  The
    certified census is the part of it that lasts: a first-layer neuron inactive on
    every training input (exact, and permanent, since its inputs never change and
    its parameters get zero gradient on every one of them), and the sign test of
    deeper layers.  A layer entirely inactive on the set (a collapse) is permanent
    too: no gradient reaches any parameter at or below it.
    """
    exact = observed(params, inputs)
    deeper = tuple(sign_certified(weights, bias) for weights, bias in params[1:-1])
    return Census((exact[0], *deeper), exact, exact)


def collapsed(bounded_inactive: tuple[jax.Array, ...]) -> jax.Array:
    """Whether some hidden layer is entirely inactive (the network is constant)."""
    return jnp.any(jnp.stack([jnp.all(layer) for layer in bounded_inactive]))
