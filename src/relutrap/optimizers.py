"""SGD-type optimizers in the convention of Jentzen, Kuckuck and von Wurstemberger.

The non-convergence theorem of Do, Hannibal and Jentzen (2024, arXiv:2410.10533)
covers every method whose update of a coordinate is a function of that coordinate's
past gradients which vanishes when they all vanish.  Every method here has that form
and is written as a pair of pure functions, applied leaf by leaf to the parameter
pytree:

* ``init(params) -> state``
* ``update(gradient, state, step) -> (update, state)``, ``step = 1, 2, ...``; the new
  parameters are ``params + update``.

Nesterov's method also evaluates its gradient at a look-ahead point; such a method
has ``lookahead(state) -> offset`` and the engine takes the gradient at
``params + offset``.

Conventions follow the book of Jentzen, Kuckuck and von Wurstemberger (2023,
arXiv:2310.20360): momentum is an exponential moving average
``m_n = alpha m_{n-1} + (1 - alpha) g_n``, Adam-type methods correct the bias of their
moving averages and put epsilon outside the square root.  Below ``g_n`` is the
gradient of step n, products and powers are elementwise, and ``gamma`` is the learning
rate.  PyTorch and optax use other conventions under the same names (a plain sum for
momentum, epsilon inside the root for Adagrad, other defaults); they are *not*
the methods below.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Method(NamedTuple):
    """An SGD-type method: ``init``, ``update`` and an optional ``lookahead``."""

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, jax.Array], tuple[Any, Any]]
    lookahead: Callable[[Any], Any] | None = None


def _zeros(params):
    return jax.tree.map(jnp.zeros_like, params)


def _power(base: float, step: jax.Array, like: jax.Array) -> jax.Array:
    return jnp.asarray(base, like.dtype) ** step.astype(like.dtype)


def _scalar(value: float, like: jax.Array) -> jax.Array:
    return jnp.asarray(value, like.dtype)


def _moving_average(average, gradient, rate):
    return jax.tree.map(
        lambda a, g: _scalar(rate, g) * a + _scalar(1 - rate, g) * g, average, gradient
    )


def sgd(learning_rate: float) -> Method:
    """Plain stochastic gradient descent: ``Theta_n = Theta_{n-1} - gamma g_n``."""

    def update(gradient, state, step):
        return jax.tree.map(lambda g: -_scalar(learning_rate, g) * g, gradient), state

    return Method(lambda params: (), update)


def momentum(learning_rate: float, alpha: float = 0.9) -> Method:
    """Momentum SGD with an exponential moving average of gradients.

    ``m_0 = 0``, ``m_n = alpha m_{n-1} + (1 - alpha) g_n``,
    ``Theta_n = Theta_{n-1} - gamma m_n``.  PyTorch and optax accumulate
    ``b_n = mu b_{n-1} + g_n`` instead, which is this method with learning rate
    ``gamma / (1 - alpha)`` only in the limit of constant gradients.
    """

    def update(gradient, average, step):
        average = _moving_average(average, gradient, alpha)
        return jax.tree.map(lambda m: -_scalar(learning_rate, m) * m, average), average

    return Method(_zeros, update)


def nesterov(learning_rate: float, alpha: float = 0.9) -> Method:
    """Nesterov accelerated SGD with a look-ahead gradient.

    ``m_n = alpha m_{n-1} + (1 - alpha) G(Theta_{n-1} - gamma alpha m_{n-1})``,
    ``Theta_n = Theta_{n-1} - gamma m_n``, where ``G(theta)`` is the stochastic
    gradient at ``theta``.  PyTorch's ``nesterov=True`` instead stores the look-ahead
    point as the parameters (a reparametrisation with a plain-sum momentum).
    """

    def lookahead(average):
        return jax.tree.map(lambda m: -_scalar(learning_rate * alpha, m) * m, average)

    def update(gradient, average, step):
        average = _moving_average(average, gradient, alpha)
        return jax.tree.map(lambda m: -_scalar(learning_rate, m) * m, average), average

    return Method(_zeros, update, lookahead)


def adagrad(learning_rate: float, epsilon: float = 1e-8) -> Method:
    """Adagrad with epsilon outside the square root.

    ``s_n = s_{n-1} + g_n^2`` (``s_0 = 0``),
    ``Theta_n = Theta_{n-1} - gamma g_n / (epsilon + sqrt(s_n))``.
    PyTorch also puts epsilon outside the root; optax puts it inside and starts the
    accumulator at 0.1.
    """

    def update(gradient, accumulator, step):
        accumulator = jax.tree.map(lambda s, g: s + g * g, accumulator, gradient)
        updates = jax.tree.map(
            lambda g, s: (
                -_scalar(learning_rate, g) * g / (_scalar(epsilon, s) + jnp.sqrt(s))
            ),
            gradient,
            accumulator,
        )
        return updates, accumulator

    return Method(_zeros, update)


def rmsprop(learning_rate: float, beta: float = 0.9, epsilon: float = 1e-8) -> Method:
    """RMSprop with epsilon outside the square root and no bias correction.

    ``s_n = beta s_{n-1} + (1 - beta) g_n^2`` (``s_0 = 0``),
    ``Theta_n = Theta_{n-1} - gamma g_n / (epsilon + sqrt(s_n))``.
    PyTorch's default decay is 0.99, optax's 0.9 with epsilon inside the root.
    """

    def update(gradient, average, step):
        average = jax.tree.map(
            lambda s, g: _scalar(beta, g) * s + _scalar(1 - beta, g) * g * g,
            average,
            gradient,
        )
        updates = jax.tree.map(
            lambda g, s: (
                -_scalar(learning_rate, g) * g / (_scalar(epsilon, s) + jnp.sqrt(s))
            ),
            gradient,
            average,
        )
        return updates, average

    return Method(_zeros, update)


class AdamState(NamedTuple):
    first: Any
    second: Any


def _adam_moments(gradient, state: AdamState, alpha, beta) -> AdamState:
    first = _moving_average(state.first, gradient, alpha)
    second = jax.tree.map(
        lambda v, g: _scalar(beta, g) * v + _scalar(1 - beta, g) * g * g,
        state.second,
        gradient,
    )
    return AdamState(first, second)


def _adam_init(params) -> AdamState:
    return AdamState(_zeros(params), _zeros(params))


def adam(
    learning_rate: float, alpha: float = 0.9, beta: float = 0.999, epsilon: float = 1e-8
) -> Method:
    """Adam with bias correction and epsilon outside the square root.

    ``m_n = alpha m_{n-1} + (1 - alpha) g_n``,
    ``v_n = beta v_{n-1} + (1 - beta) g_n^2``,
    ``Theta_n = Theta_{n-1} - gamma [m_n / (1 - alpha^n)] /
    (epsilon + sqrt(v_n / (1 - beta^n)))``.
    This is the update of Kingma and Ba (2014, arXiv:1412.6980), of PyTorch and of
    optax; Keras differs by its "epsilon hat".
    """

    def update(gradient, state, step):
        state = _adam_moments(gradient, state, alpha, beta)
        updates = jax.tree.map(
            lambda m, v: (
                -_scalar(learning_rate, m)
                * (m / (1 - _power(alpha, step, m)))
                / (_scalar(epsilon, v) + jnp.sqrt(v / (1 - _power(beta, step, v))))
            ),
            state.first,
            state.second,
        )
        return updates, state

    return Method(_adam_init, update)


def adamax(
    learning_rate: float, alpha: float = 0.9, beta: float = 0.999, epsilon: float = 1e-8
) -> Method:
    """Adamax, the infinity-norm variant of Adam, with epsilon in the denominator.

    ``m_n = alpha m_{n-1} + (1 - alpha) g_n``, ``u_n = max(beta u_{n-1}, |g_n|)``
    (``u_0 = 0``),
    ``Theta_n = Theta_{n-1} - gamma m_n / ((1 - alpha^n)(epsilon + u_n))``.
    Without epsilon (the form of Kingma and Ba) a coordinate with zero gradients gets
    0 / 0; PyTorch and optax put epsilon inside the max instead.
    """

    def update(gradient, state, step):
        first = _moving_average(state.first, gradient, alpha)
        norm = jax.tree.map(
            lambda u, g: jnp.maximum(_scalar(beta, g) * u, jnp.abs(g)),
            state.second,
            gradient,
        )
        updates = jax.tree.map(
            lambda m, u: (
                -_scalar(learning_rate, m)
                * m
                / ((1 - _power(alpha, step, m)) * (_scalar(epsilon, u) + u))
            ),
            first,
            norm,
        )
        return updates, AdamState(first, norm)

    return Method(_adam_init, update)


class AMSGradState(NamedTuple):
    first: Any
    second: Any
    largest_second: Any


def amsgrad(
    learning_rate: float, alpha: float = 0.9, beta: float = 0.999, epsilon: float = 1e-8
) -> Method:
    """AMSGrad: Adam with a running maximum of the bias-corrected second moment.

    ``m_n``, ``v_n`` as in Adam, ``w_n = max(w_{n-1}, v_n / (1 - beta^n))``
    (``w_0 = 0``), ``Theta_n = Theta_{n-1} - gamma [m_n / (1 - alpha^n)] /
    (epsilon + sqrt(w_n))``.  This takes the maximum after bias correction, as optax
    does; PyTorch takes it over the raw ``v_n`` and corrects afterwards, and Reddi,
    Kale and Kumar (2018) correct no bias at all.
    """

    def init(params):
        return AMSGradState(_zeros(params), _zeros(params), _zeros(params))

    def update(gradient, state, step):
        moments = _adam_moments(
            gradient, AdamState(state.first, state.second), alpha, beta
        )
        largest = jax.tree.map(
            lambda w, v: jnp.maximum(w, v / (1 - _power(beta, step, v))),
            state.largest_second,
            moments.second,
        )
        updates = jax.tree.map(
            lambda m, w: (
                -_scalar(learning_rate, m)
                * (m / (1 - _power(alpha, step, m)))
                / (_scalar(epsilon, w) + jnp.sqrt(w))
            ),
            moments.first,
            largest,
        )
        return updates, AMSGradState(moments.first, moments.second, largest)

    return Method(init, update)


def nadam(
    learning_rate: float, alpha: float = 0.9, beta: float = 0.999, epsilon: float = 1e-8
) -> Method:
    """Nadam, Adam with a Nesterov-style first moment (Dozat 2016), constant alpha.

    ``m_n``, ``v_n`` as in Adam,
    ``Theta_n = Theta_{n-1} - gamma [alpha m_n / (1 - alpha^(n+1))
    + (1 - alpha) g_n / (1 - alpha^n)] / (epsilon + sqrt(v_n / (1 - beta^n)))``.
    optax's ``nadam`` has this form; PyTorch's multiplies alpha by a schedule.
    """

    def update(gradient, state, step):
        state = _adam_moments(gradient, state, alpha, beta)
        updates = jax.tree.map(
            lambda m, g, v: (
                -_scalar(learning_rate, m)
                * (
                    _scalar(alpha, m) * m / (1 - _power(alpha, step + 1, m))
                    + _scalar(1 - alpha, g) * g / (1 - _power(alpha, step, g))
                )
                / (_scalar(epsilon, v) + jnp.sqrt(v / (1 - _power(beta, step, v))))
            ),
            state.first,
            gradient,
            state.second,
        )
        return updates, state

    return Method(_adam_init, update)


OPTIMIZERS: dict[str, Callable[..., Method]] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adam": adam,
    "adamax": adamax,
    "amsgrad": amsgrad,
    "nadam": nadam,
}


def hyperparameters(name: str) -> dict[str, float]:
    """The hyperparameters of a named method (besides the learning rate) and their
    defaults."""
    signature = inspect.signature(OPTIMIZERS[name])
    return {
        parameter.name: parameter.default
        for parameter in signature.parameters.values()
        if parameter.name != "learning_rate"
    }


def make(name: str, learning_rate: float, **settings: float) -> Method:
    """The method called ``name`` with its learning rate and hyperparameters."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {tuple(OPTIMIZERS)}")
    unknown = set(settings) - set(hyperparameters(name))
    if unknown:
        raise ValueError(
            f"unknown setting(s) {sorted(unknown)} for {name}; "
            f"allowed: {sorted(hyperparameters(name))}"
        )
    return OPTIMIZERS[name](learning_rate, **settings)
