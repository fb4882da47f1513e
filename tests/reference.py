"""A slow, plain float64 NumPy reference of every optimizer, from the formulas.

Each form below is written from the update rule in the docstring of the factory of the
same name in :mod:`relutrap.optimizers`, one step at a time, with the state kept in a
dict of arrays; nothing is vectorized over steps.  Used only by the tests.
"""

import math

import numpy as np


def sgd(g, s, n, gamma):
    return -gamma * g


def momentum(g, s, n, gamma, alpha):
    s["m"] = alpha * s["m"] + (1 - alpha) * g
    return -gamma * s["m"]


def heavy_ball(g, s, n, gamma, alpha, dampening):
    s["b"] = g if n == 1 else alpha * s["b"] + (1 - dampening) * g
    return -gamma * s["b"]


def momentum_sum(g, s, n, gamma, alpha):
    s["b"] = alpha * s["b"] + g
    return -gamma * s["b"]


nesterov = momentum


def nesterov_sum(g, s, n, gamma, alpha):
    s["b"] = alpha * s["b"] + g
    return -gamma * (g + alpha * s["b"])


def adagrad(g, s, n, gamma, epsilon, initial_accumulator):
    if n == 1:
        s["s"] = s["s"] + initial_accumulator
    s["s"] = s["s"] + g**2
    return -gamma * g / (epsilon + np.sqrt(s["s"]))


def adagrad_inside(g, s, n, gamma, epsilon, initial_accumulator):
    if n == 1:
        s["s"] = s["s"] + initial_accumulator
    s["s"] = s["s"] + g**2
    scale = np.where(s["s"] > 0, 1 / np.sqrt(s["s"] + epsilon), 0.0)
    return -gamma * scale * g


def rmsprop(g, s, n, gamma, beta, epsilon):
    s["s"] = beta * s["s"] + (1 - beta) * g**2
    return -gamma * g / (epsilon + np.sqrt(s["s"]))


def rmsprop_inside(g, s, n, gamma, beta, epsilon):
    s["s"] = beta * s["s"] + (1 - beta) * g**2
    return -gamma * g / np.sqrt(s["s"] + epsilon)


def adadelta(g, s, n, gamma, rho, epsilon):
    s["v"] = rho * s["v"] + (1 - rho) * g**2
    d = np.sqrt(s["x"] + epsilon) / np.sqrt(s["v"] + epsilon) * g
    s["x"] = rho * s["x"] + (1 - rho) * d**2
    return -gamma * d


def _moments(g, s, alpha, beta):
    s["m"] = alpha * s["m"] + (1 - alpha) * g
    s["v"] = beta * s["v"] + (1 - beta) * g**2


def adam(g, s, n, gamma, alpha, beta, epsilon):
    _moments(g, s, alpha, beta)
    m_hat = s["m"] / (1 - alpha**n)
    v_hat = s["v"] / (1 - beta**n)
    return -gamma * m_hat / (epsilon + np.sqrt(v_hat))


def adam_epsilon_hat(g, s, n, gamma, alpha, beta, epsilon):
    _moments(g, s, alpha, beta)
    gamma_hat = gamma * math.sqrt(1 - beta**n) / (1 - alpha**n)
    return -gamma_hat * s["m"] / (np.sqrt(s["v"]) + epsilon)


def _infinity(g, s, alpha, beta, inside):
    s["m"] = alpha * s["m"] + (1 - alpha) * g
    s["u"] = np.maximum(beta * s["u"], np.abs(g) + inside)


def adamax(g, s, n, gamma, alpha, beta, epsilon):
    _infinity(g, s, alpha, beta, 0.0)
    return -gamma * s["m"] / ((1 - alpha**n) * (epsilon + s["u"]))


def adamax_inside(g, s, n, gamma, alpha, beta, epsilon):
    _infinity(g, s, alpha, beta, epsilon)
    return -gamma * s["m"] / ((1 - alpha**n) * s["u"])


def adamax_paper(g, s, n, gamma, alpha, beta):
    _infinity(g, s, alpha, beta, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return -gamma * s["m"] / ((1 - alpha**n) * s["u"])


def amsgrad(g, s, n, gamma, alpha, beta, epsilon):
    _moments(g, s, alpha, beta)
    s["w"] = np.maximum(s["w"], s["v"] / (1 - beta**n))
    return -gamma * (s["m"] / (1 - alpha**n)) / (epsilon + np.sqrt(s["w"]))


def amsgrad_raw(g, s, n, gamma, alpha, beta, epsilon):
    _moments(g, s, alpha, beta)
    s["w"] = np.maximum(s["w"], s["v"])
    root = np.sqrt(s["w"] / (1 - beta**n))
    return -gamma * (s["m"] / (1 - alpha**n)) / (epsilon + root)


def amsgrad_epsilon_hat(g, s, n, gamma, alpha, beta, epsilon):
    _moments(g, s, alpha, beta)
    s["w"] = np.maximum(s["w"], s["v"])
    gamma_hat = gamma * math.sqrt(1 - beta**n) / (1 - alpha**n)
    return -gamma_hat * s["m"] / (np.sqrt(s["w"]) + epsilon)


def amsgrad_paper(g, s, n, gamma, alpha, beta, epsilon):
    _moments(g, s, alpha, beta)
    s["w"] = np.maximum(s["w"], s["v"])
    return -gamma * s["m"] / (epsilon + np.sqrt(s["w"]))


def _nesterov_first(g, m, n, alpha):
    return alpha * m / (1 - alpha ** (n + 1)) + (1 - alpha) * g / (1 - alpha**n)


def nadam(g, s, n, gamma, alpha, beta, epsilon):
    _moments(g, s, alpha, beta)
    first = _nesterov_first(g, s["m"], n, alpha)
    return -gamma * first / (epsilon + np.sqrt(s["v"] / (1 - beta**n)))


def nadam_scheduled(g, s, n, gamma, alpha, beta, epsilon, psi):
    _moments(g, s, alpha, beta)
    mu = alpha * (1 - 0.5 * 0.96 ** (n * psi))
    mu_next = alpha * (1 - 0.5 * 0.96 ** ((n + 1) * psi))
    s["product"] = s.get("product", 1.0) * mu
    product = s["product"]
    first = (1 - mu) / (1 - product) * g + mu_next / (1 - product * mu_next) * s["m"]
    return -gamma * first / (epsilon + np.sqrt(s["v"] / (1 - beta**n)))


def nadamax(g, s, n, gamma, alpha, beta, epsilon):
    _infinity(g, s, alpha, beta, 0.0)
    return -gamma * _nesterov_first(g, s["m"], n, alpha) / (epsilon + s["u"])


def run(form: str, gradients, rates, **settings):
    """Updates and look-ahead offsets of ``form`` over ``gradients``.

    ``gradients`` has shape ``(steps, coordinates)``; ``rates[n - 1]`` is
    ``gamma_n``.  Returns two arrays of that shape: ``Theta_n - Theta_{n-1}`` and
    the offset at which step n's gradient is taken (non-zero only for the book's
    Nesterov method: ``-gamma_n alpha m_{n-1}``).
    """
    rule = globals()[form]
    gradients = np.asarray(gradients, np.float64)
    zeros = np.zeros(gradients.shape[1])
    state = {"m": zeros, "v": zeros, "s": zeros, "b": zeros, "u": zeros}
    state.update({"w": zeros, "x": zeros})
    updates, offsets = [], []
    for n, (g, gamma) in enumerate(zip(gradients, rates), start=1):
        if form == "nesterov":
            offsets.append(-gamma * settings["alpha"] * state["m"])
        else:
            offsets.append(zeros)
        updates.append(rule(g, state, n, gamma, **settings))
    return np.array(updates), np.array(offsets)


def schedule(kind: str, gamma: float, steps: int, count: int, **parameters):
    """``gamma_1, ..., gamma_count`` of a schedule over a cell of ``steps`` steps."""
    rates = []
    for n in range(1, count + 1):
        if kind == "constant":
            rates.append(gamma)
        elif kind == "step":
            rates.append(
                gamma * parameters["factor"] ** ((n - 1) // parameters["every"])
            )
        elif kind == "inverse_time":
            rates.append(gamma / (1 + parameters["decay"] * n))
        elif kind == "cosine":
            final = parameters["final"]
            wave = (1 + math.cos(math.pi * min(n, steps) / steps)) / 2
            rates.append(gamma * (final + (1 - final) * wave))
    return np.array(rates)
