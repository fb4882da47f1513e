"""SGD-type optimizers, each in the conventions of the book, PyTorch, optax and Keras.

The non-convergence theorem of Do, Hannibal and Jentzen (2024, arXiv:2410.10533)
covers every method whose update of a coordinate is a function of that coordinate's
past gradients which vanishes when they all vanish.  Every method here is written as
a pair of pure functions, applied leaf by leaf to the parameter pytree:

* ``init(params) -> state``
* ``update(gradient, state, step, params=None) -> (update, state)``, with
  ``step = 1, 2, ...``; the new parameters are ``params + update``.  Only a method
  that decays weights (an optax transform such as ``adamw``) reads ``params``.

The book's Nesterov method also evaluates its gradient at a look-ahead point; such a
method has ``lookahead(state, step) -> offset`` and the engine takes the gradient at
``params + offset``.

One name means different update rules in different places.  ``convention`` selects
one of them:

* ``book`` (the default): Jentzen, Kuckuck and von Wurstemberger (2023,
  arXiv:2310.20360).  Momentum is an exponential moving average
  ``m_n = alpha m_{n-1} + (1 - alpha) g_n``; Adam-type methods correct the bias of
  their moving averages and put epsilon outside the square root.
* ``torch``: ``torch.optim``, e.g. momentum as a plain sum ``b_n = mu b_{n-1} + g_n``.
* ``optax``: the optax transform of that name, e.g. epsilon inside the root.
* ``keras``: Keras 3, where it differs (Adam's "epsilon hat").
* ``paper``: the method's original paper, where the libraries depart from it.

Below ``g_n`` is the gradient of step n, products, powers and maxima are elementwise
and ``gamma`` (``gamma_n`` under a learning-rate schedule, see
:mod:`relutrap.schedules`) is the learning rate.  Every convention keeps the book's
names for the hyperparameters, ``alpha`` (first moment or momentum), ``beta`` (second
moment), ``epsilon`` (``rho`` for Adadelta's decay), whatever the library calls them;
their defaults follow the library.  :func:`zero_gradient_invariance` checks the
theorem's premise for any method in a given dtype.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

LearningRate = float | Callable[[jax.Array, Any], jax.Array]


class Method(NamedTuple):
    """An SGD-type method: ``init``, ``update`` and an optional ``lookahead``."""

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any]]
    lookahead: Callable[[Any, jax.Array], Any] | None = None


def _c(value, like: jax.Array) -> jax.Array:
    return jnp.asarray(value, like.dtype)


def _power(base: float, step: jax.Array, like: jax.Array) -> jax.Array:
    return _c(base, like) ** step.astype(like.dtype)


def _rate(learning_rate: LearningRate, step: jax.Array, like: jax.Array) -> jax.Array:
    """``gamma_n`` in the dtype of ``like``."""
    if callable(learning_rate):
        return jnp.asarray(learning_rate(step, like.dtype), like.dtype)
    return _c(learning_rate, like)


@jax.tree_util.register_pytree_node_class
class Slots(tuple):
    """The state of one leaf of the parameters: a tuple of arrays."""

    def tree_flatten(self):
        return tuple(self), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(children)


def _elementwise(learning_rate, init_leaf, update_leaf, lookahead_leaf=None) -> Method:
    """A method from its rule for one leaf.

    ``init_leaf(p) -> s`` gives the leaf's state (a tuple of arrays) and
    ``update_leaf(g, s, n, gamma_n) -> (u, s)`` one step of it.
    """

    def init(params):
        return jax.tree.map(lambda p: Slots(init_leaf(p)), params)

    def update(gradient, state, step, params=None):
        leaves, treedef = jax.tree.flatten(gradient)
        states = treedef.flatten_up_to(state)
        stepped = [
            update_leaf(g, s, step, _rate(learning_rate, step, g))
            for g, s in zip(leaves, states)
        ]
        return (
            treedef.unflatten([u for u, _ in stepped]),
            treedef.unflatten([Slots(s) for _, s in stepped]),
        )

    lookahead = None
    if lookahead_leaf is not None:

        def lookahead(state, step):
            return jax.tree.map(
                lambda s: lookahead_leaf(s, _rate(learning_rate, step, s[0])),
                state,
                is_leaf=lambda s: isinstance(s, Slots),
            )

    return Method(init, update, lookahead)


def _zeros(p):
    return (jnp.zeros_like(p),)


def _zeros2(p):
    return (jnp.zeros_like(p), jnp.zeros_like(p))


def _zeros3(p):
    return (jnp.zeros_like(p), jnp.zeros_like(p), jnp.zeros_like(p))


def _average(average, g, rate):
    return _c(rate, g) * average + _c(1 - rate, g) * g


def _square_average(average, g, rate):
    return _c(rate, g) * average + _c(1 - rate, g) * g * g


# --- plain SGD and momentum -----------------------------------------------------


def sgd(learning_rate: LearningRate) -> Method:
    """Plain SGD: ``Theta_n = Theta_{n-1} - gamma g_n``; the same everywhere."""

    def update(g, state, step, gamma):
        return -gamma * g, state

    return _elementwise(learning_rate, lambda p: (), update)


def momentum(learning_rate: LearningRate, alpha: float = 0.9) -> Method:
    """Momentum as a moving average: ``m_n = alpha m_{n-1} + (1 - alpha) g_n``,
    ``Theta_n = Theta_{n-1} - gamma m_n`` (``m_0 = 0``).

    PyTorch and optax sum instead (:func:`heavy_ball`), which is this method with
    learning rate ``gamma / (1 - alpha)`` only in the limit of constant gradients.
    """

    def update(g, state, step, gamma):
        (m,) = state
        m = _average(m, g, alpha)
        return -gamma * m, (m,)

    return _elementwise(learning_rate, _zeros, update)


def heavy_ball(
    learning_rate: LearningRate, alpha: float = 0.9, dampening: float = 0.0
) -> Method:
    """Momentum as a sum: ``b_1 = g_1``, ``b_n = alpha b_{n-1} + (1 - dampening) g_n``,
    ``Theta_n = Theta_{n-1} - gamma b_n``.

    This is ``torch.optim.SGD(momentum=alpha, dampening=...)``, whose first step
    skips the dampening, and with ``dampening = 0`` optax's ``sgd(momentum=alpha)``.
    """

    def update(g, state, step, gamma):
        (b,) = state
        b = jnp.where(step == 1, g, _c(alpha, g) * b + _c(1 - dampening, g) * g)
        return -gamma * b, (b,)

    return _elementwise(learning_rate, _zeros, update)


def momentum_sum(learning_rate: LearningRate, alpha: float = 0.9) -> Method:
    """Momentum as a plain sum: ``b_n = alpha b_{n-1} + g_n`` (``b_0 = 0``),
    ``Theta_n = Theta_{n-1} - gamma b_n``.

    This is optax's ``sgd(momentum=alpha)``, and :func:`heavy_ball` without dampening.
    """
    return heavy_ball(learning_rate, alpha, 0.0)


def nesterov(learning_rate: LearningRate, alpha: float = 0.9) -> Method:
    """Nesterov's method with a look-ahead gradient:
    ``m_n = alpha m_{n-1} + (1 - alpha) G(Theta_{n-1} - gamma alpha m_{n-1})``,
    ``Theta_n = Theta_{n-1} - gamma m_n``, ``G(theta)`` the stochastic gradient at
    ``theta``.

    PyTorch and optax store the look-ahead point as the parameters instead
    (:func:`nesterov_sum`).
    """

    def update(g, state, step, gamma):
        (m,) = state
        m = _average(m, g, alpha)
        return -gamma * m, (m,)

    def lookahead(state, gamma):
        (m,) = state
        return -gamma * _c(alpha, m) * m

    return _elementwise(learning_rate, _zeros, update, lookahead)


def nesterov_sum(learning_rate: LearningRate, alpha: float = 0.9) -> Method:
    """Nesterov's method reparametrised at the look-ahead point:
    ``b_n = alpha b_{n-1} + g_n``, ``Theta_n = Theta_{n-1} - gamma (g_n + alpha b_n)``.

    This is ``torch.optim.SGD(momentum=alpha, nesterov=True)`` and optax's
    ``sgd(momentum=alpha, nesterov=True)``: the parameters are the book's look-ahead
    point, and the gradient is taken at them.
    """

    def update(g, state, step, gamma):
        (b,) = state
        b = _c(alpha, g) * b + g
        return -gamma * (g + _c(alpha, g) * b), (b,)

    return _elementwise(learning_rate, _zeros, update)


# --- Adagrad, RMSprop, Adadelta ----------------------------------------------------


def _filled(value: float):
    """An ``init`` whose single accumulator starts at ``value`` everywhere."""
    return lambda p: (jnp.full_like(p, value),)


def adagrad(
    learning_rate: LearningRate,
    epsilon: float = 1e-8,
    initial_accumulator: float = 0.0,
) -> Method:
    """Adagrad, epsilon outside the root: ``s_n = s_{n-1} + g_n^2``,
    ``Theta_n = Theta_{n-1} - gamma g_n / (epsilon + sqrt(s_n))``.

    ``s_0`` is ``initial_accumulator`` (0 in the book and in PyTorch, whose epsilon
    defaults to 1e-10).  optax puts epsilon inside the root (:func:`adagrad_inside`).
    """

    def update(g, state, step, gamma):
        (s,) = state
        s = s + g * g
        return -gamma * g / (_c(epsilon, s) + jnp.sqrt(s)), (s,)

    return _elementwise(learning_rate, _filled(initial_accumulator), update)


def adagrad_inside(
    learning_rate: LearningRate,
    epsilon: float = 1e-7,
    initial_accumulator: float = 0.1,
) -> Method:
    """Adagrad, epsilon inside the root: ``s_n = s_{n-1} + g_n^2`` (``s_0 = 0.1``),
    ``Theta_n = Theta_{n-1} - gamma g_n / sqrt(s_n + epsilon)`` where ``s_n > 0``
    and ``Theta_n = Theta_{n-1}`` where ``s_n = 0``.

    This is optax's ``adagrad``; PyTorch and the book put epsilon outside and start
    at 0 (:func:`adagrad`).
    """

    def update(g, state, step, gamma):
        (s,) = state
        s = s + g * g
        scale = jnp.where(s > 0, jax.lax.rsqrt(s + _c(epsilon, s)), _c(0, s))
        return -gamma * (scale * g), (s,)

    return _elementwise(learning_rate, _filled(initial_accumulator), update)


def rmsprop(
    learning_rate: LearningRate, beta: float = 0.9, epsilon: float = 1e-8
) -> Method:
    """RMSprop, epsilon outside the root: ``s_n = beta s_{n-1} + (1 - beta) g_n^2``,
    ``Theta_n = Theta_{n-1} - gamma g_n / (epsilon + sqrt(s_n))`` (``s_0 = 0``).

    PyTorch has this form with ``beta = 0.99`` (its ``alpha``); optax (decay 0.9) and
    Keras put epsilon inside the root (:func:`rmsprop_inside`).
    """

    def update(g, state, step, gamma):
        (s,) = state
        s = _square_average(s, g, beta)
        return -gamma * g / (_c(epsilon, s) + jnp.sqrt(s)), (s,)

    return _elementwise(learning_rate, _zeros, update)


def rmsprop_inside(
    learning_rate: LearningRate, beta: float = 0.9, epsilon: float = 1e-8
) -> Method:
    """RMSprop, epsilon inside the root: ``s_n = beta s_{n-1} + (1 - beta) g_n^2``,
    ``Theta_n = Theta_{n-1} - gamma g_n / sqrt(s_n + epsilon)`` (``s_0 = 0``).

    This is optax's ``rmsprop`` (decay 0.9); PyTorch puts epsilon outside.
    """

    def update(g, state, step, gamma):
        (s,) = state
        s = _square_average(s, g, beta)
        return -gamma * (g * jax.lax.rsqrt(s + _c(epsilon, s))), (s,)

    return _elementwise(learning_rate, _zeros, update)


def adadelta(
    learning_rate: LearningRate, rho: float = 0.9, epsilon: float = 1e-6
) -> Method:
    """Adadelta (Zeiler 2012, arXiv:1212.5701): ``v_n = rho v_{n-1} + (1 - rho) g_n^2``,
    ``d_n = sqrt(x_{n-1} + epsilon) / sqrt(v_n + epsilon) g_n``,
    ``x_n = rho x_{n-1} + (1 - rho) d_n^2``, ``Theta_n = Theta_{n-1} - gamma d_n``.

    The same rule in PyTorch (``lr = 1`` by default) and optax; Zeiler has no
    learning rate, i.e. ``gamma = 1``.
    """

    def update(g, state, step, gamma):
        v, x = state
        v = _square_average(v, g, rho)
        d = jnp.sqrt(x + _c(epsilon, x)) / jnp.sqrt(v + _c(epsilon, v)) * g
        x = _square_average(x, d, rho)
        return -gamma * d, (v, x)

    return _elementwise(learning_rate, _zeros2, update)


# --- Adam and its relatives ----------------------------------------------------------


def _adam_moments(g, m, v, alpha, beta):
    return _average(m, g, alpha), _square_average(v, g, beta)


def adam(
    learning_rate: LearningRate,
    alpha: float = 0.9,
    beta: float = 0.999,
    epsilon: float = 1e-8,
) -> Method:
    """Adam: ``m_n = alpha m_{n-1} + (1 - alpha) g_n``,
    ``v_n = beta v_{n-1} + (1 - beta) g_n^2``,
    ``Theta_n = Theta_{n-1} - gamma [m_n / (1 - alpha^n)] /
    (epsilon + sqrt(v_n / (1 - beta^n)))``.

    The rule of Kingma and Ba (2014, arXiv:1412.6980), of PyTorch and of optax;
    Keras differs by its "epsilon hat" (:func:`adam_epsilon_hat`).
    """

    def update(g, state, step, gamma):
        m, v = _adam_moments(g, *state, alpha, beta)
        corrected = m / (1 - _power(alpha, step, m))
        root = jnp.sqrt(v / (1 - _power(beta, step, v)))
        return -gamma * corrected / (_c(epsilon, v) + root), (m, v)

    return _elementwise(learning_rate, _zeros2, update)


def adam_epsilon_hat(
    learning_rate: LearningRate,
    alpha: float = 0.9,
    beta: float = 0.999,
    epsilon: float = 1e-7,
) -> Method:
    """Adam with "epsilon hat": ``m_n``, ``v_n`` as in Adam,
    ``gamma_n' = gamma sqrt(1 - beta^n) / (1 - alpha^n)``,
    ``Theta_n = Theta_{n-1} - gamma_n' m_n / (sqrt(v_n) + epsilon)``.

    This is Keras's Adam: epsilon is added to the uncorrected ``sqrt(v_n)``, so it
    weighs ``1 / sqrt(1 - beta^n)`` times more than in :func:`adam`.
    """

    def update(g, state, step, gamma):
        m, v = _adam_moments(g, *state, alpha, beta)
        scale = jnp.sqrt(1 - _power(beta, step, v)) / (1 - _power(alpha, step, m))
        return -gamma * scale * m / (jnp.sqrt(v) + _c(epsilon, v)), (m, v)

    return _elementwise(learning_rate, _zeros2, update)


def adamax(
    learning_rate: LearningRate,
    alpha: float = 0.9,
    beta: float = 0.999,
    epsilon: float = 1e-8,
) -> Method:
    """Adamax, epsilon beside the norm: ``m_n = alpha m_{n-1} + (1 - alpha) g_n``,
    ``u_n = max(beta u_{n-1}, |g_n|)`` (``u_0 = 0``),
    ``Theta_n = Theta_{n-1} - gamma m_n / ((1 - alpha^n)(epsilon + u_n))``.

    Keras has this form (epsilon 1e-7).  PyTorch and optax put epsilon inside the max
    (:func:`adamax_inside`); Kingma and Ba (2014, arXiv:1412.6980) have none
    (:func:`adamax_paper`).
    """

    def update(g, state, step, gamma):
        m, u = state
        m = _average(m, g, alpha)
        u = jnp.maximum(_c(beta, u) * u, jnp.abs(g))
        corrected = m / (1 - _power(alpha, step, m))
        return -gamma * corrected / (_c(epsilon, u) + u), (m, u)

    return _elementwise(learning_rate, _zeros2, update)


def adamax_inside(
    learning_rate: LearningRate,
    alpha: float = 0.9,
    beta: float = 0.999,
    epsilon: float = 1e-8,
) -> Method:
    """Adamax, epsilon inside the max: ``m_n`` as in Adam,
    ``u_n = max(beta u_{n-1}, |g_n| + epsilon)``,
    ``Theta_n = Theta_{n-1} - gamma m_n / ((1 - alpha^n) u_n)``.

    This is PyTorch's and optax's ``adamax``.
    """

    def update(g, state, step, gamma):
        m, u = state
        m = _average(m, g, alpha)
        u = jnp.maximum(_c(beta, u) * u, jnp.abs(g) + _c(epsilon, u))
        corrected = m / (1 - _power(alpha, step, m))
        return -gamma * corrected / u, (m, u)

    return _elementwise(learning_rate, _zeros2, update)


def adamax_paper(
    learning_rate: LearningRate, alpha: float = 0.9, beta: float = 0.999
) -> Method:
    """Adamax without epsilon: ``m_n`` as in Adam, ``u_n = max(beta u_{n-1}, |g_n|)``,
    ``Theta_n = Theta_{n-1} - gamma m_n / ((1 - alpha^n) u_n)``.

    The form of Kingma and Ba (2014, arXiv:1412.6980).  A coordinate whose gradients
    all vanish gets ``0 / 0``: the theorem's premise fails for it.
    """

    def update(g, state, step, gamma):
        m, u = state
        m = _average(m, g, alpha)
        u = jnp.maximum(_c(beta, u) * u, jnp.abs(g))
        corrected = m / (1 - _power(alpha, step, m))
        return -gamma * corrected / u, (m, u)

    return _elementwise(learning_rate, _zeros2, update)


def amsgrad(
    learning_rate: LearningRate,
    alpha: float = 0.9,
    beta: float = 0.999,
    epsilon: float = 1e-8,
) -> Method:
    """AMSGrad, maximum of the corrected moment: ``m_n``, ``v_n`` as in Adam,
    ``w_n = max(w_{n-1}, v_n / (1 - beta^n))`` (``w_0 = 0``),
    ``Theta_n = Theta_{n-1} - gamma [m_n / (1 - alpha^n)] / (epsilon + sqrt(w_n))``.

    This is optax's ``amsgrad``.  PyTorch and Keras take the maximum of the raw
    ``v_n`` and correct afterwards (:func:`amsgrad_raw`, :func:`amsgrad_epsilon_hat`);
    Reddi, Kale and Kumar (2018) correct no bias (:func:`amsgrad_paper`).
    """

    def update(g, state, step, gamma):
        m, v, w = state
        m, v = _adam_moments(g, m, v, alpha, beta)
        w = jnp.maximum(w, v / (1 - _power(beta, step, v)))
        corrected = m / (1 - _power(alpha, step, m))
        return -gamma * corrected / (_c(epsilon, w) + jnp.sqrt(w)), (m, v, w)

    return _elementwise(learning_rate, _zeros3, update)


def amsgrad_raw(
    learning_rate: LearningRate,
    alpha: float = 0.9,
    beta: float = 0.999,
    epsilon: float = 1e-8,
) -> Method:
    """AMSGrad, maximum of the raw moment: ``w_n = max(w_{n-1}, v_n)``,
    ``Theta_n = Theta_{n-1} - gamma [m_n / (1 - alpha^n)] /
    (epsilon + sqrt(w_n / (1 - beta^n)))``.

    This is ``torch.optim.Adam(amsgrad=True)``.  Since ``1 - beta^n`` grows, the
    corrected maximum can shrink, unlike optax's.
    """

    def update(g, state, step, gamma):
        m, v, w = state
        m, v = _adam_moments(g, m, v, alpha, beta)
        w = jnp.maximum(w, v)
        corrected = m / (1 - _power(alpha, step, m))
        root = jnp.sqrt(w) / jnp.sqrt(1 - _power(beta, step, w))
        return -gamma * corrected / (_c(epsilon, w) + root), (m, v, w)

    return _elementwise(learning_rate, _zeros3, update)


def amsgrad_epsilon_hat(
    learning_rate: LearningRate,
    alpha: float = 0.9,
    beta: float = 0.999,
    epsilon: float = 1e-7,
) -> Method:
    """AMSGrad with a raw maximum and "epsilon hat": ``w_n = max(w_{n-1}, v_n)``,
    ``Theta_n = Theta_{n-1} - gamma sqrt(1 - beta^n) / (1 - alpha^n) m_n /
    (sqrt(w_n) + epsilon)``.

    This is Keras's ``Adam(amsgrad=True)``.
    """

    def update(g, state, step, gamma):
        m, v, w = state
        m, v = _adam_moments(g, m, v, alpha, beta)
        w = jnp.maximum(w, v)
        scale = jnp.sqrt(1 - _power(beta, step, w)) / (1 - _power(alpha, step, m))
        return -gamma * scale * m / (jnp.sqrt(w) + _c(epsilon, w)), (m, v, w)

    return _elementwise(learning_rate, _zeros3, update)


def amsgrad_paper(
    learning_rate: LearningRate,
    alpha: float = 0.9,
    beta: float = 0.999,
    epsilon: float = 1e-8,
) -> Method:
    """AMSGrad without bias correction: ``w_n = max(w_{n-1}, v_n)``,
    ``Theta_n = Theta_{n-1} - gamma m_n / (epsilon + sqrt(w_n))``.

    Reddi, Kale and Kumar (2018, arXiv:1904.09237) have no epsilon (``epsilon = 0``
    here, which gives ``0 / 0`` on a coordinate without gradients).
    """

    def update(g, state, step, gamma):
        m, v, w = state
        m, v = _adam_moments(g, m, v, alpha, beta)
        w = jnp.maximum(w, v)
        return -gamma * m / (_c(epsilon, w) + jnp.sqrt(w)), (m, v, w)

    return _elementwise(learning_rate, _zeros3, update)


def nadam(
    learning_rate: LearningRate,
    alpha: float = 0.9,
    beta: float = 0.999,
    epsilon: float = 1e-8,
) -> Method:
    """Nadam with constant alpha (Dozat 2016): ``m_n``, ``v_n`` as in Adam,
    ``Theta_n = Theta_{n-1} - gamma [alpha m_n / (1 - alpha^(n+1))
    + (1 - alpha) g_n / (1 - alpha^n)] / (epsilon + sqrt(v_n / (1 - beta^n)))``.

    This is optax's ``nadam``; PyTorch multiplies alpha by a schedule
    (:func:`nadam_scheduled`).
    """

    def update(g, state, step, gamma):
        m, v = _adam_moments(g, *state, alpha, beta)
        first = _c(alpha, m) * m / (1 - _power(alpha, step + 1, m)) + _c(
            1 - alpha, g
        ) * g / (1 - _power(alpha, step, g))
        root = jnp.sqrt(v / (1 - _power(beta, step, v)))
        return -gamma * first / (_c(epsilon, v) + root), (m, v)

    return _elementwise(learning_rate, _zeros2, update)


def nadam_scheduled(
    learning_rate: LearningRate,
    alpha: float = 0.9,
    beta: float = 0.999,
    epsilon: float = 1e-8,
    psi: float = 0.004,
) -> Method:
    """Nadam with a momentum schedule: ``mu_n = alpha (1 - 0.96^(n psi) / 2)``,
    ``P_n = mu_1 ... mu_n``, ``m_n``, ``v_n`` as in Adam,
    ``Theta_n = Theta_{n-1} - gamma [(1 - mu_n) / (1 - P_n) g_n
    + mu_{n+1} / (1 - P_n mu_{n+1}) m_n] / (epsilon + sqrt(v_n / (1 - beta^n)))``.

    This is ``torch.optim.NAdam`` (``psi`` is its ``momentum_decay``); as ``psi``
    grows ``mu_n`` tends to alpha and the rule to optax's (:func:`nadam`).
    """

    def init(p):
        return (jnp.zeros_like(p), jnp.zeros_like(p), jnp.ones((), p.dtype))

    def update(g, state, step, gamma):
        m, v, product = state
        m, v = _adam_moments(g, m, v, alpha, beta)
        decay = _c(0.96, g)
        mu = _c(alpha, g) * (1 - _c(0.5, g) * decay ** (step.astype(g.dtype) * psi))
        mu_next = _c(alpha, g) * (
            1 - _c(0.5, g) * decay ** ((step + 1).astype(g.dtype) * psi)
        )
        product = product * mu
        first = (1 - mu) / (1 - product) * g + mu_next / (1 - product * mu_next) * m
        root = jnp.sqrt(v / (1 - _power(beta, step, v)))
        return -gamma * first / (_c(epsilon, v) + root), (m, v, product)

    return _elementwise(learning_rate, init, update)


def nadamax(
    learning_rate: LearningRate,
    alpha: float = 0.9,
    beta: float = 0.999,
    epsilon: float = 1e-8,
) -> Method:
    """Nadamax, Nadam's first moment over Adamax's norm: ``m_n``, ``u_n`` as in
    Adamax, ``Theta_n = Theta_{n-1} - gamma [alpha m_n / (1 - alpha^(n+1))
    + (1 - alpha) g_n / (1 - alpha^n)] / (epsilon + u_n)``.

    Dozat's (2016) Nesterov step over the infinity norm of Kingma and Ba (2014,
    arXiv:1412.6980); neither PyTorch nor optax 0.2.8 ship it, so it has only the
    book's convention (epsilon beside the norm, as in the book's Adamax).
    """

    def update(g, state, step, gamma):
        m, u = state
        m = _average(m, g, alpha)
        u = jnp.maximum(_c(beta, u) * u, jnp.abs(g))
        first = _c(alpha, m) * m / (1 - _power(alpha, step + 1, m)) + _c(
            1 - alpha, g
        ) * g / (1 - _power(alpha, step, g))
        return -gamma * first / (_c(epsilon, u) + u), (m, u)

    return _elementwise(learning_rate, _zeros2, update)


# --- the registry ------------------------------------------------------------------

_p = functools.partial

OPTIMIZERS: dict[str, dict[str, Callable[..., Method]]] = {
    "sgd": {"book": sgd, "torch": sgd, "optax": sgd},
    "momentum": {
        "book": momentum,
        "torch": heavy_ball,
        "optax": momentum_sum,
    },
    "nesterov": {"book": nesterov, "torch": nesterov_sum, "optax": nesterov_sum},
    "adagrad": {
        "book": adagrad,
        "torch": _p(adagrad, epsilon=1e-10),
        "optax": adagrad_inside,
    },
    "rmsprop": {
        "book": rmsprop,
        "torch": _p(rmsprop, beta=0.99),
        "optax": rmsprop_inside,
    },
    "adadelta": {"book": adadelta, "torch": adadelta, "optax": adadelta},
    "adam": {
        "book": adam,
        "torch": adam,
        "optax": adam,
        "keras": adam_epsilon_hat,
    },
    "adamax": {
        "book": adamax,
        "torch": adamax_inside,
        "optax": adamax_inside,
        "keras": _p(adamax, epsilon=1e-7),
        "paper": adamax_paper,
    },
    "amsgrad": {
        "book": amsgrad,
        "torch": amsgrad_raw,
        "optax": amsgrad,
        "keras": amsgrad_epsilon_hat,
        "paper": amsgrad_paper,
    },
    "nadam": {"book": nadam, "torch": nadam_scheduled, "optax": nadam},
    "nadamax": {"book": nadamax},
}

OPTAX_PREFIX = "optax:"
# A cell's optimizer "custom:<name>" is a transform given to the study from Python.
CUSTOM_PREFIX = "custom:"


def conventions(name: str) -> tuple[str, ...]:
    """The conventions in which the method called ``name`` is available."""
    return tuple(OPTIMIZERS[name])


def check_convention(name: str, convention: str) -> None:
    """Raise a ``ValueError`` naming the allowed values if the pair is unknown."""
    if name not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}"
        )
    if convention not in OPTIMIZERS[name]:
        raise ValueError(
            f"unknown convention {convention!r} for {name}; "
            f"allowed: {', '.join(conventions(name))}"
        )


def hyperparameters(name: str, convention: str = "book") -> dict[str, float]:
    """The hyperparameters of a method (besides the learning rate) and their
    defaults in a convention."""
    check_convention(name, convention)
    signature = inspect.signature(OPTIMIZERS[name][convention])
    return {
        parameter.name: parameter.default
        for parameter in signature.parameters.values()
        if parameter.name != "learning_rate"
    }


def formula(name: str, convention: str = "book") -> str:
    """The first paragraph of the update rule's docstring, on one line."""
    check_convention(name, convention)
    factory = OPTIMIZERS[name][convention]
    factory = getattr(factory, "func", factory)
    paragraph = inspect.getdoc(factory).split("\n\n")[0]
    return " ".join(paragraph.replace("``", "").split())


def from_optax(transform, schedule: Callable | None = None) -> Method:
    """A method from an optax ``GradientTransformation``.

    ``schedule(n, dtype)``, if given, multiplies the transform's updates of step n;
    optax counts its steps itself.
    """

    def update(gradient, state, step, params=None):
        # optax relies on JAX's standard promotion (e.g. ``b1 ** count``).
        with jax.numpy_dtype_promotion("standard"):
            updates, state = transform.update(gradient, state, params)
        if schedule is not None:
            updates = jax.tree.map(
                lambda u: u * jnp.asarray(schedule(step, u.dtype), u.dtype), updates
            )
        return updates, state

    return Method(transform.init, update)


def as_method(optimizer) -> Method:
    """A :class:`Method` as it is, or an optax ``GradientTransformation`` adapted."""
    if isinstance(optimizer, Method):
        return optimizer
    if callable(getattr(optimizer, "init", None)) and callable(
        getattr(optimizer, "update", None)
    ):
        return from_optax(optimizer)
    raise TypeError(f"not an optimizer: {optimizer!r}")


def optax_factory(name: str):
    """The optax function behind ``"optax:<alias>"``; ``ValueError`` if none."""
    import optax

    factory = getattr(optax, name.removeprefix(OPTAX_PREFIX), None)
    if factory is None or not callable(factory):
        raise ValueError(f"optax has no optimizer {name.removeprefix(OPTAX_PREFIX)!r}")
    return factory


def make(
    name: str,
    learning_rate: float,
    convention: str = "book",
    schedule: Callable | None = None,
    **settings,
) -> Method:
    """The method called ``name`` in a convention, with its hyperparameters.

    ``schedule(n, dtype)`` is a factor of the learning rate at step n
    (:mod:`relutrap.schedules`); ``None`` keeps it constant.  A name
    ``"optax:<alias>"`` builds ``optax.<alias>(learning_rate=..., **settings)``.
    """
    if name.startswith(OPTAX_PREFIX):
        if convention != "book":
            raise ValueError(f"{name} has no conventions, got {convention!r}")
        transform = optax_factory(name)(learning_rate=learning_rate, **settings)
        return from_optax(transform, schedule)
    check_convention(name, convention)
    allowed = hyperparameters(name, convention)
    unknown = set(settings) - set(allowed)
    if unknown:
        raise ValueError(
            f"unknown setting(s) {', '.join(sorted(unknown))} for {name} "
            f"({convention}); allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
    rate: LearningRate = learning_rate
    if schedule is not None:

        def rate(step, dtype):
            return jnp.asarray(learning_rate, dtype) * schedule(step, dtype)

    return OPTIMIZERS[name][convention](rate, **settings)


# --- the theorem's premise -----------------------------------------------------------

INVARIANCE_DTYPES = ("float32", "float64", "bfloat16", "float16")


def zero_gradient_invariance(
    method,
    dtype: str,
    zero: np.ndarray | None = None,
    seed: int = 0,
    scale: float = 1.0,
    steps: int = 12,
) -> bool:
    """Whether coordinates whose gradient was always exactly 0 keep their value.

    Runs ``steps`` steps on a vector of parameters in ``dtype`` with standard normal
    gradients times ``scale`` (exact zeros where ``zero``, by default every other
    coordinate; the others also see exact zeros, sign flips and a change of scale),
    and checks that the zero coordinates keep their value bit for bit, stay finite,
    and are not moved by a look-ahead.  This is the premise of the theorem of Do,
    Hannibal and Jentzen (2024, arXiv:2410.10533); a method that decays weights, or
    divides 0 by 0 (Adamax without epsilon), fails it.  ``method`` is a
    :class:`Method` or an optax ``GradientTransformation``.
    """
    method = as_method(method)
    rng = np.random.default_rng(seed)
    size = 12 if zero is None else len(zero)
    zero = np.arange(size) % 2 == 0 if zero is None else np.asarray(zero, bool)
    gradients = rng.standard_normal((steps, size)) * scale
    gradients[steps // 3] = 0.0
    gradients[steps // 3 + 1 :: 3] *= -1.0
    gradients[steps // 2 :] *= 1e-2
    gradients[:, zero] = 0.0

    with jax.enable_x64(dtype == "float64" or jax.config.jax_enable_x64):
        start = jnp.asarray(rng.standard_normal(size), dtype)
        params = start
        state = method.init(params)
        moved = False
        for n in range(1, steps + 1):
            step = jnp.asarray(n, jnp.int32)
            if method.lookahead is not None:
                offset = np.asarray(method.lookahead(state, step))
                moved |= bool(np.any(offset[zero] != 0))
            update, state = method.update(
                jnp.asarray(gradients[n - 1], dtype), state, step, params
            )
            params = params + update
        final = np.asarray(params)
        unsigned = f"u{final.dtype.itemsize}"
        kept = final.view(unsigned) == np.asarray(start).view(unsigned)
        finite = np.isfinite(final.astype(np.float64))
    return bool(np.all(kept[zero]) and np.all(finite[zero]) and not moved)
