"""Initialization schemes and the exact laws they draw parameters from.

Every scheme draws the weights of a layer with fan-in ``n_in`` and fan-out ``n_out``
independently from one law, and the biases from a law chosen by a *bias rule*:

=================  ==============================================  ============
scheme             weight law                                      default bias
=================  ==============================================  ============
``normal``         N(0, 1)                                         same law
``uniform``        U(-a, a), ``a`` = ``scale`` (default 1)         same law
``he_normal``      N(0, 2 / n_in)                                  zero
``he_uniform``     U(-sqrt(6 / n_in), sqrt(6 / n_in))              zero
``glorot_normal``  N(0, 2 / (n_in + n_out))                        zero
``glorot_uniform`` U(-sqrt(6 / (n_in + n_out)), +...)              zero
``lecun_normal``   N(0, 1 / n_in)                                  zero
``torch_default``  U(-1 / sqrt(n_in), 1 / sqrt(n_in))              same law
``asymmetric``     see below                                       with the weights
=================  ==============================================  ============

``asymmetric`` is the randomized asymmetric initialization of Lu, Shin, Su and
Karniadakis (2019, arXiv:1903.06733): for each neuron of a hidden layer, one entry of
its incoming vector ``(w_1, ..., w_{n_in}, b)``, chosen uniformly at random, is drawn
from the positive law Beta(2, 1) and the other ``n_in`` entries from N(0, s^2).  We
take ``s^2 = 3 / (2 n_in)``, which makes the expected squared norm of the vector
``E[P^2] + n_in s^2 = 1/2 + 3/2 = 2``, the value of He's scheme (``n_in * 2 / n_in``).
The output layer is drawn N(0, 1 / n_in) with zero bias.  The one positive entry
makes a neuron less likely to be inactive on a box around the origin.

``torch_default`` is what PyTorch's ``nn.Linear`` does on construction: weights and
biases both uniform with half-width ``1 / sqrt(fan_in)``.  The bias rules are ``zero``,
``same`` (the weight law of the layer) and ``constant`` (every bias equals ``value``).
The normal laws here are not truncated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp

from relutrap.networks import Architecture, Params

LawKind = Literal["normal", "uniform", "constant"]


@dataclass(frozen=True)
class Law:
    """A law on the real line: ``normal`` N(0, scale^2), ``uniform`` U(-scale, scale),
    or ``constant`` (the value ``scale``)."""

    kind: LawKind
    scale: float

    def sample(self, key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
        if self.kind == "normal":
            return self.scale * jax.random.normal(key, shape, dtype)
        if self.kind == "uniform":
            return jax.random.uniform(key, shape, dtype, -self.scale, self.scale)
        return jnp.full(shape, self.scale, dtype)

    def describe(self) -> str:
        if self.kind == "normal":
            return f"N(0, {self.scale:.6g}^2)"
        if self.kind == "uniform":
            return f"U(-{self.scale:.6g}, {self.scale:.6g})"
        return f"constant {self.scale:.6g}"


SCHEMES = (
    "normal",
    "uniform",
    "he_normal",
    "he_uniform",
    "glorot_normal",
    "glorot_uniform",
    "lecun_normal",
    "torch_default",
    "asymmetric",
)
BIAS_RULES = ("default", "zero", "same", "constant")
_SAME_BIAS_BY_DEFAULT = ("normal", "uniform", "torch_default")


@dataclass(frozen=True)
class Initialization:
    """A scheme with its bias rule.

    Attributes:
        scheme: one of :data:`SCHEMES`.
        bias: one of :data:`BIAS_RULES`; ``default`` is the scheme's own rule.
        value: the bias value for the ``constant`` rule.
        scale: the half-width ``a`` of the ``uniform`` scheme.
    """

    scheme: str = "normal"
    bias: str = "default"
    value: float = 0.0
    scale: float = 1.0

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(
                f"unknown scheme {self.scheme!r}; allowed: {', '.join(SCHEMES)}"
            )
        if self.bias not in BIAS_RULES:
            raise ValueError(
                f"unknown bias rule {self.bias!r}; allowed: {', '.join(BIAS_RULES)}"
            )
        if self.scheme == "asymmetric" and self.bias != "default":
            raise ValueError("the asymmetric scheme draws the biases with the weights")

    @property
    def is_asymmetric(self) -> bool:
        """Whether the entries of a neuron are drawn jointly, not independently
        (the ``asymmetric`` scheme): :meth:`weight_law` is then only the law of
        its symmetric entries."""
        return self.scheme == "asymmetric"

    def weight_law(self, fan_in: int, fan_out: int) -> Law:
        """The law of every weight of a layer with this fan-in and fan-out."""
        match self.scheme:
            case "normal":
                return Law("normal", 1.0)
            case "uniform":
                return Law("uniform", self.scale)
            case "he_normal":
                return Law("normal", math.sqrt(2.0 / fan_in))
            case "he_uniform":
                return Law("uniform", math.sqrt(6.0 / fan_in))
            case "glorot_normal":
                return Law("normal", math.sqrt(2.0 / (fan_in + fan_out)))
            case "glorot_uniform":
                return Law("uniform", math.sqrt(6.0 / (fan_in + fan_out)))
            case "lecun_normal":
                return Law("normal", math.sqrt(1.0 / fan_in))
            case "asymmetric":
                return Law("normal", math.sqrt(1.5 / fan_in))
            case _:
                return Law("uniform", 1.0 / math.sqrt(fan_in))

    def bias_law(self, fan_in: int, fan_out: int) -> Law:
        """The law of every bias of a layer with this fan-in and fan-out."""
        rule = self.bias
        if rule == "default":
            rule = "same" if self.scheme in _SAME_BIAS_BY_DEFAULT else "zero"
        if rule == "same":
            return self.weight_law(fan_in, fan_out)
        if rule == "constant":
            return Law("constant", self.value)
        return Law("constant", 0.0)

    def describe(self, arch: Architecture) -> list[str]:
        """One line per layer naming its weight and bias laws."""
        if self.is_asymmetric:
            return [
                f"layer {k + 1}: one entry of (w, b) per neuron Beta(2, 1), "
                f"the others {self.weight_law(n_in, n_out).describe()}"
                for k, (n_in, n_out) in enumerate(zip(arch[:-2], arch[1:-1]))
            ] + [f"output layer: weights N(0, 1/{arch[-2]}), bias 0"]
        return [
            f"layer {k + 1}: weights {self.weight_law(n_in, n_out).describe()}, "
            f"biases {self.bias_law(n_in, n_out).describe()}"
            for k, (n_in, n_out) in enumerate(zip(arch, arch[1:]))
        ]


def initialize(
    key: jax.Array, arch: Architecture, init: Initialization, dtype=jnp.float32
) -> Params:
    """Draw the parameters of one network.

    Args:
        key: a PRNG key; layer k uses ``fold_in(key, k)``.
        arch: the architecture ``(d, l1, ..., lL, 1)``.
        init: the scheme and bias rule.

    Returns:
        ``((W1, b1), ..., (W_{L+1}, b_{L+1}))`` with ``Wk`` of shape
        ``(arch[k-1], arch[k])``.
    """
    params = []
    for k, (fan_in, fan_out) in enumerate(zip(arch, arch[1:])):
        if init.is_asymmetric:
            layer_key = jax.random.fold_in(key, k)
            if k < len(arch) - 2:
                params.append(asymmetric_layer(layer_key, fan_in, fan_out, dtype))
            else:
                weights = jax.random.normal(layer_key, (fan_in, fan_out), dtype)
                scale = jnp.asarray(1.0 / math.sqrt(fan_in), dtype)
                params.append((scale * weights, jnp.zeros((fan_out,), dtype)))
            continue
        weight_key, bias_key = jax.random.split(jax.random.fold_in(key, k))
        weights = init.weight_law(fan_in, fan_out).sample(
            weight_key, (fan_in, fan_out), dtype
        )
        bias = init.bias_law(fan_in, fan_out).sample(bias_key, (fan_out,), dtype)
        params.append((weights, bias))
    return tuple(params)


def asymmetric_layer(
    key: jax.Array, fan_in: int, fan_out: int, dtype=jnp.float32
) -> tuple[jax.Array, jax.Array]:
    """A hidden layer of the randomized asymmetric initialization.

    Each neuron's vector ``(w_1, ..., w_{fan_in}, b)`` has one entry, at a uniform
    random position, drawn from Beta(2, 1) (as ``sqrt(U)``, U uniform on (0, 1):
    its CDF is ``x^2``; always positive) and the others from N(0, 3 / (2 fan_in)).

    Returns:
        weights of shape ``(fan_in, fan_out)`` and biases of shape ``(fan_out,)``.
    """
    position_key, positive_key, symmetric_key = jax.random.split(key, 3)
    scale = jnp.asarray(math.sqrt(1.5 / fan_in), dtype)
    symmetric = scale * jax.random.normal(symmetric_key, (fan_in + 1, fan_out), dtype)
    # U is drawn from [0, 1): the smallest normal float in place of an exact 0
    # keeps the entry positive, as a Beta(2, 1) entry is with probability 1.
    uniform = jax.random.uniform(positive_key, (fan_in + 1, fan_out), dtype)
    positive = jnp.sqrt(jnp.maximum(uniform, jnp.finfo(dtype).tiny))
    position = jax.random.randint(position_key, (fan_out,), 0, fan_in + 1)
    chosen = jnp.arange(fan_in + 1)[:, None] == position[None, :]
    vectors = jnp.where(chosen, positive, symmetric)
    return vectors[:-1], vectors[-1]
