"""Risk levels of a shallow ReLU network and the local minimizers that sit on them.

For a shallow architecture ``(d, l1, 1)`` and a problem, the *risk level* ``R_k`` is
the smallest risk of a network of the architecture whose first layer has at most
``k`` live neurons, ``k = 0 .. l1`` (Jentzen and Riekert 2024, arXiv:2402.05155).
A neuron that is inactive on the domain contributes nothing, so ``R_k`` is the
optimal risk of the architecture ``(d, k, 1)``; the levels are nonincreasing in
``k``, ``R_0 = Var f(X)`` (the best constant is the mean) and ``R_l1`` is the optimal
risk.  A best ``k``-neuron network padded with ``l1 - k`` neurons inactive on the
domain is a local minimizer of the risk: small moves keep the padded neurons
inactive, so locally the risk is that of the ``k``-neuron network.  A run with ``j``
neurons certified inactive at initialization keeps them inactive for ever and so
cannot end below ``R_(l1 - j)``.

The risk is the one the runs are judged by (:func:`relutrap.problems.evaluation_inputs`:
the midpoint rule in dimension 1, a fixed sample otherwise), in float64.  Two
independent solvers compute the levels:

* **training**, for any dimension: many starts (first-layer kinks through the
  domain, the best network of level ``k - 1`` with one new neuron, that of level
  ``k + 1`` with one neuron removed) trained together by full-batch Adam under
  ``jax.vmap``, the best few polished by L-BFGS-B with exact gradients;
* **free-knot**, in dimension 1: a shallow network on an interval is
  ``c + sum_j v_j relu(s_j (x - t_j))`` with knots ``t_j`` and facings
  ``s_j = +-1``.  For fixed knots and facings the coefficients ``c, v`` solve a
  linear least-squares problem exactly; the knots are optimized by L-BFGS-B on the
  reduced objective (variable projection), from random starts (each the best of
  many random placements of the knots and facings, by the fit they give), from the
  level below's best knots plus one (at the best of 128 scanned places) and from
  the level above's minus one.  With the facings fixed this is the whole problem
  (any ``w_j != 0`` is a knot and a scale absorbed into ``v_j``), so no further
  polish on all parameters is needed.

Every level found is the risk of an actual network, hence an upper bound on the true
level; the stated accuracy is the agreement of the two solvers where both ran.  For
a teacher of width ``m``, ``R_k = 0`` for ``k >= m`` exactly (the teacher itself).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.linalg
import scipy.optimize
from threadpoolctl import threadpool_limits

from relutrap.inactivity import first_layer_certified
from relutrap.networks import Architecture, Params, realization
from relutrap.problems import Problem, evaluation_inputs, target_values, teacher_params

METHODS = ("auto", "both", "free-knot", "training")
# The widest first layer each solver computes levels of: the free-knot solver's time
# grows about as l1^2 (4 minutes at width 64 on a shared 2-core machine), the
# training solver's about as l1^3 (2 minutes at width 16 in dimension 2).
LARGEST_WIDTH = {"free-knot": 64, "training": 16}


def automatic_solver(dimension: int) -> str:
    """The solver of ``method = "auto"``: free-knot in dimension 1, else training."""
    return "free-knot" if dimension == 1 else "training"


MARGIN = 1.0
SCREENED = 1024
SCREENING_INPUTS = 128
# A kink within this fraction of the domain's width of an input lies on it.
KINK_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Level:
    """The level ``R_k`` and how it was found.

    Attributes:
        live: ``k``, the number of live first-layer neurons.
        risk: ``R_k`` (the best of the solvers that ran).
        method: ``exact`` (``k = 0``, or a teacher of width ``<= k``), ``free-knot``,
            ``training`` or ``free-knot + training``.
        free_knot: the free-knot solver's value, or ``None``.
        training: the training solver's value, or ``None``.
        agreement: ``|free_knot - training| / Var f(X)`` where both ran.
        hits: how many starts of the winning solver reached the level to within
            ``1e-9 Var f(X)``, out of ``starts``.
        network: a best ``k``-neuron network ``(d, k, 1)`` (float64 arrays).
    """

    live: int
    risk: float
    method: str
    free_knot: float | None
    training: float | None
    agreement: float | None
    hits: int
    starts: int
    network: Params = dataclasses.field(repr=False, compare=False)

    def as_record(self, variance: float) -> dict:
        return {
            "live": self.live,
            "risk": self.risk,
            "relative_risk": self.risk / variance if variance > 0 else None,
            "method": self.method,
            "free_knot": self.free_knot,
            "training": self.training,
            "agreement": self.agreement,
            "hits": self.hits,
            "starts": self.starts,
        }


@dataclass(frozen=True)
class Levels:
    """The staircase ``R_0 >= R_1 >= ... >= R_l1`` of one problem and architecture."""

    architecture: Architecture
    variance: float
    risk_method: str
    levels: tuple[Level, ...]

    @property
    def risks(self) -> np.ndarray:
        return np.array([level.risk for level in self.levels])

    def as_record(self) -> dict:
        return {
            "architecture": list(self.architecture),
            "variance": self.variance,
            "risk_method": self.risk_method,
            "levels": [level.as_record(self.variance) for level in self.levels],
        }


def risk_data(problem: Problem, arch: Architecture) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation inputs ``(n, d)`` and the target there ``(n,)``, float64."""
    with jax.enable_x64(True):
        inputs = evaluation_inputs(problem, jnp.float64)
        targets = target_values(problem, arch, inputs)
        return np.asarray(inputs), np.asarray(targets)


def _check_box(problem: Problem) -> None:
    if problem.shape != "box" or problem.data is not None:
        raise ValueError("risk levels are computed for inputs uniform on a box")


def _check_shallow(arch: Architecture) -> None:
    if len(arch) != 3 or arch[-1] != 1:
        raise ValueError(
            f"risk levels need a shallow architecture (d, l1, 1), got {arch}"
        )


# The free-knot solver (dimension 1).


def _design(x: np.ndarray, knots: np.ndarray, facings: np.ndarray) -> np.ndarray:
    """Columns ``1, relu(s_j (x - t_j))``: shape ``(n, k + 1)``, or ``(m, n, k + 1)``
    for ``m`` rows of knots and facings of shape ``(m, k)``."""
    ramps = np.maximum(facings[..., None, :] * (x[:, None] - knots[..., None, :]), 0.0)
    return np.concatenate([np.ones((*ramps.shape[:-1], 1)), ramps], axis=-1)


def _least_squares(x, y, knots, facings):
    design = _design(x, knots, facings)
    coefficients = np.linalg.lstsq(design, y, rcond=None)[0]
    return design, coefficients, design @ coefficients - y


def _reduced_risk(knots, x, y, facings):
    """The risk with the coefficients solved exactly, and its gradient in the knots.

    By the envelope theorem the gradient holds the optimal coefficients fixed:
    ``d/dt_j mean(r^2) = (2 / n) sum_i r_i v_j (-s_j) [s_j (x_i - t_j) > 0]``.
    """
    _, coefficients, residual = _least_squares(x, y, knots, facings)
    active = facings * (x[:, None] - knots) > 0
    gradient = 2.0 / len(x) * (residual @ active) * coefficients[1:] * -facings
    return float(np.mean(residual**2)), gradient


def _knot_network(knots, facings, coefficients) -> Params:
    """``c + sum_j v_j relu(s_j (x - t_j))`` as parameters of ``(1, k, 1)``."""
    k = len(knots)
    weights = np.asarray(facings, float).reshape(1, k)
    bias = -np.asarray(facings, float) * np.asarray(knots, float)
    outgoing = np.asarray(coefficients[1:], float).reshape(k, 1)
    return (
        (weights, bias),
        (outgoing, np.asarray(coefficients[:1], float)),
    )


def free_knot_level(
    x: np.ndarray,
    y: np.ndarray,
    k: int,
    low: float,
    high: float,
    rng: np.random.Generator,
    starts: int,
    seeds: list[tuple[np.ndarray, np.ndarray]] = (),
) -> tuple[float, int, Params]:
    """The best least-squares fit of ``y`` on the grid ``x`` by ``k`` ReLU neurons.

    Args:
        x, y: inputs and targets, shape ``(n,)``.
        k: the number of neurons (knots), at least 1.
        starts: the number of random starts: the best ``starts`` of
            ``SCREENED * starts`` random placements (knots uniform on
            ``[low, high]``, a random number of left-facing neurons), ranked by
            the risk of their least-squares fit on a subsample of about
            ``SCREENING_INPUTS`` inputs.  Screening many placements costs little
            and lands far more starts in the basins of the best fits than plain
            random starts do.
        seeds: further starts, as ``(knots, facings)`` pairs of length ``k``.

    Returns:
        the risk ``mean(r^2)``, the number of starts within ``1e-9 Var y`` of it,
        and the best network ``(1, k, 1)``.
    """
    candidates = list(seeds)
    if starts:
        candidates += _screened_starts(x, y, k, low, high, rng, starts)
    results = []
    for knots, facings in candidates:
        value, knots = _optimize_knots(x, y, knots, facings, low, high)
        results.append((value, knots, facings))
    risks = np.array([risk for risk, _, _ in results])
    best = int(np.argmin(risks))
    _, knots, facings = results[best]
    _, coefficients, residual = _least_squares(x, y, knots, facings)
    risk = float(np.mean(residual**2))
    hits = int(np.sum(risks <= risk + 1e-9 * max(np.var(y), 1e-300)))
    return risk, hits, _knot_network(knots, facings, coefficients)


def _screened_starts(x, y, k, low, high, rng, starts):
    """The ``starts`` best of ``SCREENED * starts`` random placements of the knots
    (uniform on ``[low, high]``, each neuron facing left with a probability drawn
    per placement), ranked by the risk of their least-squares fit on about
    ``SCREENING_INPUTS`` of the inputs."""
    count = SCREENED * starts
    share = rng.random((count, 1))
    facings = np.where(rng.random((count, k)) < share, -1.0, 1.0)
    knots = rng.uniform(low, high, (count, k))
    stride = max(1, len(x) // SCREENING_INPUTS)
    risks = np.concatenate(
        [
            _fit_risks(x[::stride], y[::stride], knots[part], facings[part])
            for part in np.array_split(np.arange(count), max(1, count // 256))
        ]
    )
    return [(knots[i], facings[i]) for i in np.argsort(risks)[:starts]]


def _fit_risks(x, y, knots, facings):
    """The risk of the least-squares fit for each row of ``knots`` and ``facings``
    (shape ``(m, k)``), by the normal equations, slightly regularized: accurate
    enough to rank starts, not to report a level."""
    design = _design(x, knots, facings)
    transposed = np.swapaxes(design, 1, 2)
    gram = transposed @ design
    ridge = 1e-12 * np.trace(gram, axis1=1, axis2=2)[:, None, None]
    coefficients = np.linalg.solve(
        gram + ridge * np.eye(gram.shape[1]), (transposed @ y)[..., None]
    )
    residual = (design @ coefficients)[..., 0] - y
    return np.mean(residual**2, axis=1)


def _optimize_knots(x, y, knots, facings, low, high):
    """L-BFGS-B on the reduced risk in the knots.

    The reduced risk has a kink wherever a knot crosses an input, and L-BFGS-B
    tends to stop at the first such kink that is a minimum in its own knot, with
    the other knots unfinished.  So the knots it leaves on an input are held
    there while the others are finished, then all are released again, as long as
    that lowers the risk (at most three times).
    """
    whole = [(low, high)] * len(knots)
    value, knots = _knot_search(x, y, np.clip(knots, low, high), facings, whole)
    for _ in range(3):
        nearest = x[np.argmin(np.abs(x[:, None] - knots), axis=0)]
        held = np.abs(knots - nearest) <= KINK_TOLERANCE * (high - low)
        if not held.any():
            break
        knots = np.where(held, nearest, knots)
        bounds = [(t, t) if hold else (low, high) for t, hold in zip(knots, held)]
        _, finished = _knot_search(x, y, knots, facings, bounds)
        released, free = _knot_search(x, y, finished, facings, whole)
        if released >= value:
            break
        value, knots = released, free
    return value, knots


def _knot_search(x, y, knots, facings, bounds):
    solution = scipy.optimize.minimize(
        _reduced_risk,
        knots,
        args=(x, y, facings),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-13},
    )
    return float(solution.fun), solution.x


def _knots_of(network: Params) -> tuple[np.ndarray, np.ndarray]:
    """Knots ``-b_j / w_j`` and facings ``sign(w_j)`` of a ``(1, k, 1)`` network
    (a neuron with ``w_j = 0`` gets a knot at 0, facing right)."""
    (weights, bias), _ = network
    weights = np.asarray(weights, float)[0]
    safe = np.where(weights == 0, 1.0, weights)
    return -np.asarray(bias, float) / safe, np.where(weights < 0, -1.0, 1.0)


# The training solver (any dimension).


def _random_networks(key, count: int, problem: Problem, k: int, scale: float):
    """``count`` networks ``(d, k, 1)`` whose first-layer kinks cross the domain."""
    d = problem.dimension
    keys = jax.random.split(key, 5)
    directions = jax.random.normal(keys[0], (count, d, k), jnp.float64)
    directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
    steepness = jax.random.uniform(keys[1], (count, 1, k), jnp.float64, 0.5, 2.0)
    weights = directions * steepness / (problem.high - problem.low)
    points = jax.random.uniform(
        keys[2], (count, d, k), jnp.float64, problem.low, problem.high
    )
    bias = -jnp.sum(weights * points, axis=1)
    outgoing = jax.random.normal(keys[3], (count, k, 1), jnp.float64) * scale
    output_bias = jax.random.normal(keys[4], (count, 1), jnp.float64) * scale
    return ((weights, bias), (outgoing, output_bias))


def _risk_function(inputs, targets):
    inputs, targets = jnp.asarray(inputs), jnp.asarray(targets)

    def risk(params):
        errors = realization(params, inputs) - targets
        return jnp.mean(errors * errors)

    return risk


def _flatten(params: Params) -> np.ndarray:
    """``(W, b, v, c)`` of a shallow network as one float64 vector."""
    return np.concatenate(
        [np.ravel(np.asarray(a, float)) for layer in params for a in layer]
    )


def _unflatten(vector: np.ndarray, d: int, k: int) -> Params:
    cut = np.cumsum([d * k, k, k])
    weights, bias, outgoing, output_bias = np.split(vector, cut)
    return (
        (weights.reshape(d, k), bias),
        (outgoing.reshape(k, 1), output_bias),
    )


def shallow_risk(vectors: np.ndarray, inputs, targets, d: int, k: int) -> np.ndarray:
    """The risk of shallow networks given as flat vectors, shape ``(..., P)`` to
    ``(...)``; plain NumPy in float64."""
    cut = np.cumsum([d * k, k, k])
    weights, bias, outgoing, output_bias = np.split(vectors, cut, axis=-1)
    weights = weights.reshape(*vectors.shape[:-1], d, k)
    hidden = np.maximum(
        np.einsum("nd,...dk->...nk", inputs, weights) + bias[..., None, :], 0.0
    )
    outputs = np.einsum("...nk,...k->...n", hidden, outgoing) + output_bias
    return np.mean((outputs - targets) ** 2, axis=-1)


def shallow_risk_and_gradient(vector, inputs, targets, d: int, k: int):
    """The risk of one shallow network (flat vector) and its exact gradient.

    With ``h = relu(X W + b)`` and residual ``r = h v + c - y``:
    ``dv = (2/n) h^T r``, ``dc = (2/n) sum r``, ``dZ = (2/n) r v^T [XW + b > 0]``,
    ``dW = X^T dZ``, ``db = sum_i dZ_i`` (the ReLU's derivative at 0 taken as 0).
    """
    nowhere = np.zeros(0, int)
    return _piece_gradient(
        vector, inputs, targets, d, k, (nowhere, nowhere), np.zeros(0, bool)
    )


def polish(
    params: Params, inputs, targets, iterations: int = 3000
) -> tuple[Params, float]:
    """L-BFGS-B on all parameters of a shallow network with exact gradients."""
    d, k = np.shape(params[0][0])
    solution = scipy.optimize.minimize(
        shallow_risk_and_gradient,
        _flatten(params),
        args=(inputs, targets, d, k),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": iterations, "ftol": 1e-16, "gtol": 1e-13},
    )
    best = _unflatten(solution.x, d, k)
    return best, shallow_risk_and_gradient(solution.x, inputs, targets, d, k)[0]


def training_level(
    inputs: np.ndarray,
    targets: np.ndarray,
    problem: Problem,
    k: int,
    key: jax.Array,
    starts: int,
    steps: int,
    seeds: list[Params] = (),
    polished: int = 4,
) -> tuple[float, int, Params]:
    """The best risk of ``(d, k, 1)`` networks found by multi-start training.

    ``starts`` random networks (first-layer kinks through the domain) and the
    ``seeds`` (networks ``(d, k, 1)``) are trained together by full-batch Adam
    (``steps`` steps, cosine-decayed rate from 0.02); the best ``polished`` are
    finished by L-BFGS-B with exact gradients.

    Returns:
        the risk, the number of polished starts within ``1e-9 Var f`` of it, and
        the best network.
    """
    risk = _risk_function(inputs, targets)
    scale = float(np.std(targets)) or 1.0
    batches = []
    if starts:
        batches.append(_random_networks(key, starts, problem, k, scale / math.sqrt(k)))
    if seeds:
        batches.append(jax.tree.map(lambda *arrays: jnp.stack(arrays), *seeds))
    params = jax.tree.map(lambda *arrays: jnp.concatenate(arrays), *batches)
    optimizer = optax.adam(optax.cosine_decay_schedule(0.02, max(steps, 1)))
    gradient = jax.grad(risk)

    @jax.jit
    def train(params):
        def step(carry, _):
            params, state = carry
            updates, state = optimizer.update(gradient(params), state, params)
            return (optax.apply_updates(params, updates), state), None

        state = optimizer.init(params)
        (params, _), _ = jax.lax.scan(step, (params, state), None, length=steps)
        return params

    with jax.numpy_dtype_promotion("standard"):  # optax's schedules rely on it
        trained = jax.vmap(train)(params)
    final = np.asarray(jax.vmap(risk)(trained))
    final = np.where(np.isfinite(final), final, np.inf)
    results = []
    for index in np.argsort(final)[:polished]:
        start = jax.tree.map(lambda array, i=index: np.asarray(array[i]), trained)
        results.append(polish(start, inputs, targets))
    values = np.array([value for _, value in results])
    best = int(np.argmin(values))
    hits = int(np.sum(values <= values[best] + 1e-9 * max(np.var(targets), 1e-300)))
    return float(values[best]), hits, results[best][0]


def _grow(network: Params, rng: np.random.Generator, problem: Problem) -> Params:
    """The network with one more neuron, whose kink crosses the domain and whose
    outgoing weight is small."""
    (weights, bias), (outgoing, output_bias) = jax.tree.map(np.asarray, network)
    d = problem.dimension
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)
    direction *= rng.uniform(0.5, 2.0) / (problem.high - problem.low)
    point = rng.uniform(problem.low, problem.high, d)
    return (
        (
            np.concatenate([weights, direction[:, None]], axis=1),
            np.append(bias, -direction @ point),
        ),
        (np.concatenate([outgoing, [[1e-3]]]), output_bias),
    )


def _without(network: Params, neuron: int) -> Params:
    """The network with one neuron removed."""
    (weights, bias), (outgoing, output_bias) = jax.tree.map(np.asarray, network)
    return (
        (np.delete(weights, neuron, axis=1), np.delete(bias, neuron)),
        (np.delete(outgoing, neuron, axis=0), output_bias),
    )


# The staircase.


def _constant_network(d: int, mean: float) -> Params:
    return (
        (np.zeros((d, 0)), np.zeros(0)),
        (np.zeros((0, 1)), np.array([mean])),
    )


def _teacher_network(problem: Problem, arch: Architecture, k: int) -> Params:
    """The teacher, padded to ``k`` neurons with inactive ones."""
    with jax.enable_x64(True):
        teacher = jax.tree.map(
            np.asarray, teacher_params(problem, problem.teacher_width(arch))
        )
    return pad(teacher, k)


def risk_levels(
    problem: Problem,
    arch: Architecture,
    method: str = "auto",
    starts: int = 16,
    steps: int = 2000,
    seed: int = 0,
) -> Levels:
    """The levels ``R_0, ..., R_l1`` of ``arch = (d, l1, 1)`` on ``problem``.

    Args:
        method: ``free-knot`` (dimension 1 only), ``training``, ``both``, or
            ``auto`` (free-knot in dimension 1, training otherwise).
        starts: random starts per level and solver (plus warm starts from the
            level below).
        steps: Adam steps of the training solver.
        seed: seeds every random start.
    """
    _check_shallow(arch)
    _check_box(problem)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if method == "auto":
        method = automatic_solver(problem.dimension)
    if method in ("free-knot", "both") and problem.dimension != 1:
        raise ValueError("the free-knot solver needs dimension 1")
    inputs, targets = risk_data(problem, arch)
    # Many small least-squares problems: BLAS threads only contend for the cores.
    with threadpool_limits(1):
        return _risk_levels(problem, arch, method, starts, steps, seed, inputs, targets)


def _risk_levels(problem, arch, method, starts, steps, seed, inputs, targets):
    variance = float(np.var(targets))
    tiny = 1e-9 * max(variance, 1e-300)
    width = arch[1]
    solved = width
    if variance == 0:
        solved = 0
    elif problem.target.kind == "teacher":
        solved = min(width, problem.teacher_width(arch) - 1)

    exact = {0: _constant_network(arch[0], float(np.mean(targets)))}
    for k in range(solved + 1, width + 1):
        exact[k] = (
            _teacher_network(problem, arch, k) if variance > 0 else pad(exact[0], k)
        )
    found = {}
    if method in ("free-knot", "both"):
        found["free-knot"] = _staircase(
            _free_knot_solver(inputs, targets, problem, starts, seed),
            solved,
            exact,
            problem,
            seed,
        )
    if method in ("training", "both"):
        found["training"] = _staircase(
            _training_solver(inputs, targets, problem, starts, steps, seed),
            solved,
            exact,
            problem,
            seed,
        )

    levels = []
    name = {"both": "free-knot + training"}.get(method, method)
    for k in range(width + 1):
        if k in exact:
            network = exact[k]
            # Beyond R_0 an exact level is the target itself (the teacher, or the
            # constant padded): its risk is 0, whatever the rounding of a replay.
            risk = (
                float(np.mean((_realize(network, inputs) - targets) ** 2))
                if k == 0
                else 0.0
            )
            levels.append(Level(k, risk, "exact", None, None, None, 1, 1, network))
            continue
        values = {solver: staircase[k] for solver, staircase in found.items()}
        risk, hits, network = min(values.values(), key=lambda item: item[0])
        below = levels[-1]
        if below.risk < risk - tiny:
            # A k-neuron network can do what the level below does.
            risk, network = below.risk, pad(below.network, k)
        free = values.get("free-knot", (None,))[0]
        trained = values.get("training", (None,))[0]
        agreement = (
            abs(free - trained) / variance
            if free is not None and trained is not None
            else None
        )
        levels.append(
            Level(
                k,
                risk,
                name,
                free,
                trained,
                agreement,
                hits,
                starts,
                jax.tree.map(np.asarray, network),
            )
        )
    return Levels(tuple(arch), variance, problem.risk_method(), tuple(levels))


def _free_knot_solver(inputs, targets, problem, starts, seed):
    x, rng = inputs[:, 0], np.random.default_rng([seed, 1])

    def solve(k, seeds, random):
        knots = [_knots_of(network) for network in seeds]
        return free_knot_level(
            x, targets, k, problem.low, problem.high, rng, starts * random, knots
        )

    def grow(network):
        """The network with one knot more, at the best 4 of 128 scanned places."""
        knots, facings = _knots_of(network)
        places = np.linspace(problem.low, problem.high, 66)[1:-1]
        scanned = []
        for place in places:
            for facing in (-1.0, 1.0):
                trial = (np.append(knots, place), np.append(facings, facing))
                residual = _least_squares(x, targets, *trial)[2]
                scanned.append((float(np.mean(residual**2)), trial))
        scanned.sort(key=lambda item: item[0])
        return [
            _knot_network(*trial, _least_squares(x, targets, *trial)[1])
            for _, trial in scanned[:4]
        ]

    solve.grow = grow
    return solve


def _training_solver(inputs, targets, problem, starts, steps, seed):
    def solve(k, seeds, random):
        with jax.enable_x64(True):
            key = jax.random.fold_in(jax.random.key(seed), k)
            return training_level(
                inputs,
                targets,
                problem,
                k,
                key,
                starts * random,
                steps,
                seeds,
            )

    return solve


def _staircase(solve, solved: int, exact: dict, problem: Problem, seed: int) -> dict:
    """Levels ``1 .. solved`` by one solver: a forward pass (random starts, and the
    best network of the level below grown by one neuron), then a backward pass (the
    best network of the level above with each neuron removed in turn), keeping the
    better result per level.  Returns ``{k: (risk, hits, network)}``."""
    rng = np.random.default_rng([seed, 2])
    found = {}
    for k in range(1, solved + 1):
        below = found[k - 1][2] if k > 1 else None
        seeds = []
        if below is not None:
            grow = getattr(solve, "grow", None)
            seeds = (
                grow(below) if grow else [_grow(below, rng, problem) for _ in range(4)]
            )
        found[k] = solve(k, seeds, True)
    for k in range(solved, 0, -1):
        if k + 1 not in found and k + 1 not in exact:
            continue
        above = found[k + 1][2] if k + 1 in found else exact[k + 1]
        seeds = [_without(above, neuron) for neuron in range(k + 1)]
        result = solve(k, seeds, False)
        if result[0] < found[k][0]:
            found[k] = result
    return found


def _realize(params: Params, inputs: np.ndarray) -> np.ndarray:
    (weights, bias), (outgoing, output_bias) = params
    hidden = np.maximum(inputs @ weights + bias, 0.0)
    return (hidden @ outgoing + output_bias)[:, 0]


# Local minimizers.


def pad(network: Params, width: int, margin: float = MARGIN) -> Params:
    """A ``(d, k, 1)`` network padded to ``width`` neurons by inactive ones.

    Each added neuron has incoming weights 0, bias ``-margin`` (so its
    pre-activation is ``-margin`` on every input) and outgoing weight 0.
    """
    (weights, bias), (outgoing, output_bias) = jax.tree.map(np.asarray, network)
    d, k = weights.shape
    extra = width - k
    if extra < 0:
        raise ValueError(f"cannot pad {k} neurons to {width}")
    return (
        (
            np.concatenate([weights, np.zeros((d, extra))], axis=1),
            np.concatenate([bias, np.full(extra, -margin)]),
        ),
        (np.concatenate([outgoing, np.zeros((extra, 1))]), output_bias),
    )


def local_minimizer(levels: Levels, k: int, margin: float = MARGIN) -> Params:
    """The local minimizer on level ``R_k``: a best ``k``-neuron network padded with
    ``l1 - k`` neurons inactive on the domain (pre-activation ``-margin``)."""
    return pad(levels.levels[k].network, levels.architecture[1], margin)


@dataclass(frozen=True)
class Verification:
    """Numerical evidence that a parameter vector is a local minimizer of the risk.

    The risk is an average over finitely many evaluation inputs, so it is smooth in
    the parameters except where a live neuron's kink (the set ``x w_j + b_j = 0``)
    passes through an evaluation input.  A minimizer of such a discrete
    least-squares problem often sits exactly on such a *kink*; there the gradient
    does not exist and the plain tests do not apply (:func:`verify_minimizer`
    says which criterion it applied).

    Attributes:
        risk: the risk at the parameters.
        criterion: ``smooth`` (no live kink on an evaluation input) or
            ``at a kink``.
        kinks: the number of (live neuron, evaluation input) pairs whose kink lies
            on the input (within ``1e-9 (high - low)``).
        gradient_norm: Euclidean norm of the gradient of the risk; at a kink, of
            its part along the moves that keep every such kink on its input.
        one_sided: at a kink, the smallest one-sided derivative of the risk in the
            directions that move a kink off its input (to either side), per unit
            change of the pre-activation there; ``None`` when smooth.
        live: the number of first-layer neurons not certified inactive on the box.
        smallest_eigenvalue: the smallest eigenvalue of the Hessian restricted to
            the live coordinates (live neurons' weights, biases, outgoing weights,
            and the output bias); at a kink, restricted further to the moves that
            keep every kink on its input.
        largest_decrease: ``risk - min risk(params + delta)`` over the random
            perturbations ``delta`` (``<= 0`` when none decreased the risk).
        perturbations, radius: how many perturbations, each of Euclidean norm
            ``radius`` over all parameters.
        passed: every test within its tolerance.
    """

    risk: float
    criterion: str
    kinks: int
    gradient_norm: float
    one_sided: float | None
    live: int
    smallest_eigenvalue: float
    largest_decrease: float
    perturbations: int
    radius: float
    passed: bool

    def as_record(self) -> dict:
        return dataclasses.asdict(self)


@threadpool_limits.wrap(limits=1)
def verify_minimizer(
    problem: Problem,
    arch: Architecture,
    params: Params,
    radius: float = 1e-3,
    perturbations: int = 2000,
    gradient_tolerance: float = 1e-6,
    eigenvalue_tolerance: float = 1e-7,
    decrease_tolerance: float = 1e-10,
    seed: int = 0,
) -> Verification:
    """Test numerically whether ``params`` of ``arch = (d, l1, 1)`` is a local
    minimizer of the risk on ``problem``.

    All tests run in float64 on the risk's evaluation inputs ``x_i``, with
    tolerances that scale with the target's variance (so that they do not depend
    on its units).  Where no live neuron's kink lies on an input (criterion
    ``smooth``), the risk is smooth near ``params`` and the tests are: the
    gradient norm is at most ``gradient_tolerance * sqrt(Var f)``; the smallest
    eigenvalue of the Hessian on the live coordinates is at least
    ``-eigenvalue_tolerance * Var f``; and no random perturbation of all
    parameters of norm ``radius`` lowers the risk by more than
    ``decrease_tolerance * Var f``.

    Where kinks lie on inputs (within ``1e-9 (high - low)``; criterion
    ``at a kink``), the risk is smooth on each side of every such kink, and the
    pre-activations ``z_ij = x_i w_j + b_j`` of the pairs on a kink are linear
    in the parameters.  The tests are the necessary conditions for a local
    minimum of this piecewise smooth function: the gradient along the moves that
    keep every ``z_ij = 0`` is at most the gradient tolerance; the one-sided
    derivatives that move a ``z_ij`` to either side are at least minus that
    tolerance (with ``g_0`` the gradient on the side where the pair is
    inactive, ``g_0 + mu a`` that on the side where it is active,
    ``a = grad z_ij`` and ``mu = (2/n) r_i v_j``, and ``g_0`` written as
    ``sum beta a`` plus its kink-preserving part, the one-sided derivatives
    along ``a`` are ``-beta`` and ``beta + mu``: this asks for
    ``-mu <= beta <= 0``, up to the tolerance); the Hessian on the
    kink-preserving live moves, plus the directions of any side whose one-sided
    derivative is within the tolerance of 0 (with that side's Hessian), is
    positive semidefinite within the eigenvalue tolerance; and the perturbation
    test as above.  Kinks whose normals ``a`` are linearly dependent are not
    decided by these tests: such a point does not pass.
    """
    _check_shallow(arch)
    inputs, targets = risk_data(problem, arch)
    scale = float(np.var(targets)) or 1.0
    flat = gradient_tolerance * math.sqrt(scale)
    d, k = np.shape(params[0][0])
    vector = _flatten(params)
    (weights, bias), (outgoing, _) = _unflatten(vector, d, k)
    inactive = np.asarray(
        first_layer_certified(weights, bias, problem.low, problem.high)
    )
    live_neuron = ~inactive
    live = _flatten(
        (
            (np.broadcast_to(live_neuron, (d, k)), live_neuron),
            (live_neuron[:, None], np.ones(1)),
        )
    ).astype(bool)

    # The pairs (input, live neuron) whose kink lies on the input.
    preactivation = inputs @ weights + bias
    steepness = np.linalg.norm(weights, axis=0)
    reach = KINK_TOLERANCE * (problem.high - problem.low) * steepness
    on_kink = live_neuron & (steepness > 0) & (np.abs(preactivation) <= reach)
    kinks = np.nonzero(on_kink)
    value = float(shallow_risk(vector, inputs, targets, d, k))
    gradient = _piece_gradient(
        vector, inputs, targets, d, k, kinks, np.zeros(len(kinks[0]), bool)
    )[1]
    residual = _realize(_unflatten(vector, d, k), inputs) - targets
    normals, jumps = _kink_normals(inputs, outgoing, residual, d, k, kinks)

    decided = True
    inactive_side = active_side = np.zeros(0)
    along = gradient
    if normals.shape[1]:
        decided = np.linalg.matrix_rank(normals) == normals.shape[1]
        beta = np.linalg.lstsq(normals, gradient, rcond=None)[0]
        along = gradient - normals @ beta
        inactive_side, active_side = -beta, beta + jumps

    # Second order: the kink-preserving live moves, plus the direction of every
    # side that is flat to first order, with the Hessian of that side's piece.
    strict = (inactive_side > flat) & (active_side > flat)
    sides = [
        [side for side, slope in ((False, inactive), (True, active)) if slope <= flat]
        for inactive, active, firm in zip(inactive_side, active_side, strict)
        if not firm
    ]
    pieces = [np.array(choice, bool) for choice in itertools.product(*sides)]
    if not decided or len(pieces) > 64:
        # Not decided here; the curvature off every kink is still reported.
        decided, strict = False, np.ones(len(jumps), bool)
        pieces = [np.zeros(0, bool)]
    directions = _moves(live, normals[:, strict])
    step = _hessian_step(preactivation, inputs, live_neuron, on_kink)
    smallest = math.inf
    for choice in pieces:
        chosen = np.zeros(len(jumps), bool)
        chosen[~strict] = choice
        hessian = _hessian(
            lambda v, chosen=chosen: _piece_gradient(
                v, inputs, targets, d, k, kinks, chosen
            )[1],
            vector,
            directions,
            step,
        )
        if hessian.size:
            smallest = min(smallest, float(np.linalg.eigvalsh(hessian)[0]))
    smallest = 0.0 if smallest == math.inf else smallest

    rng = np.random.default_rng(seed)
    shifts = rng.standard_normal((perturbations, vector.size))
    shifts /= np.linalg.norm(shifts, axis=1, keepdims=True)
    lowest = min(
        float(np.min(shallow_risk(vector + radius * chunk, inputs, targets, d, k)))
        for chunk in np.array_split(shifts, max(1, perturbations // 128))
    )
    decrease = value - lowest

    gradient_norm = float(np.linalg.norm(along))
    one_sided = (
        float(min(inactive_side.min(), active_side.min())) if len(jumps) else None
    )
    passed = (
        decided
        and gradient_norm <= flat
        and (one_sided is None or one_sided >= -flat)
        and smallest >= -eigenvalue_tolerance * scale
        and decrease <= decrease_tolerance * scale
    )
    return Verification(
        value,
        "at a kink" if len(jumps) else "smooth",
        len(jumps),
        gradient_norm,
        one_sided,
        int(np.sum(live_neuron)),
        smallest,
        decrease,
        perturbations,
        radius,
        bool(passed),
    )


def _piece_gradient(vector, inputs, targets, d, k, kinks, sides):
    """The risk and its gradient on one smooth piece: the pairs ``(input, neuron)``
    in ``kinks`` count as active where ``sides`` is true and inactive elsewhere,
    whatever the sign of their (rounded) pre-activation; the others as usual."""
    (weights, bias), (outgoing, output_bias) = _unflatten(vector, d, k)
    preactivation = inputs @ weights + bias
    active = preactivation > 0
    active[kinks] = sides
    hidden = np.where(active, preactivation, 0.0)
    residual = hidden @ outgoing[:, 0] + output_bias[0] - targets
    scaled = 2.0 / len(targets) * residual
    d_pre = np.outer(scaled, outgoing[:, 0]) * active
    gradient = np.concatenate(
        [
            np.ravel(inputs.T @ d_pre),
            d_pre.sum(axis=0),
            hidden.T @ scaled,
            [scaled.sum()],
        ]
    )
    return float(np.mean(residual**2)), gradient


def _kink_normals(inputs, outgoing, residual, d, k, kinks):
    """Per pair on a kink, the unit normal ``a / |a|`` of its pre-activation
    ``z = x_i w_j + b_j`` in parameter space, as columns of ``(P, m)``, and the jump
    ``|a| mu`` of the risk's directional derivative along it when the pair turns
    active, ``mu = (2 / n) r_i v_j``."""
    rows, neurons = kinks
    normals = np.zeros((d * k + 2 * k + 1, len(rows)))
    for column, (row, neuron) in enumerate(zip(rows, neurons)):
        normals[np.arange(d) * k + neuron, column] = inputs[row]
        normals[d * k + neuron, column] = 1.0
    lengths = np.linalg.norm(normals, axis=0)
    jumps = 2.0 / len(residual) * residual[rows] * outgoing[neurons, 0] * lengths
    return normals / np.maximum(lengths, 1e-300), jumps


def _moves(live, normals):
    """An orthonormal basis ``(P, r)`` of the moves of the live coordinates that
    are orthogonal to the columns of ``normals``."""
    coordinates = np.eye(live.size)[:, live]
    if not normals.shape[1]:
        return coordinates
    basis = scipy.linalg.null_space(normals.T @ coordinates)
    return coordinates @ basis


def _hessian_step(preactivation, inputs, live_neuron, on_kink):
    """A finite-difference step that moves no live pre-activation that is not on a
    kink across 0: half the smallest ``|z_ij| / |(x_i, 1)|`` over the live pairs
    not on a kink, at most ``1e-5`` and at least ``1e-8``."""
    reach = np.sqrt(np.sum(inputs**2, axis=1) + 1.0)[:, None]
    counted = np.broadcast_to(live_neuron, on_kink.shape) & ~on_kink
    margins = (np.abs(preactivation) / reach)[counted]
    if not margins.size:
        return 1e-5
    return float(np.clip(margins.min() / 2, 1e-8, 1e-5))


def _hessian(gradient, vector, directions, step):
    """The Hessian along the orthonormal columns of ``directions``, ``(r, r)``, by
    central differences of the exact ``gradient`` (error ``O(step^2)`` where the
    risk is smooth), symmetrized."""
    columns = []
    for direction in directions.T:
        plus = gradient(vector + step * direction)
        minus = gradient(vector - step * direction)
        columns.append(directions.T @ (plus - minus) / (2 * step))
    count = directions.shape[1]
    hessian = np.array(columns).reshape(count, count)
    return (hessian + hessian.T) / 2


# Final risks of a study against the levels.

SUMMARY_STARTS = 8


def cache_key(
    problem: Problem, arch: Architecture, starts: int = SUMMARY_STARTS
) -> str:
    """A name of the levels of ``problem`` and ``arch`` as the summary computes them
    (the teacher's width resolved, so equal problems share their levels)."""
    target = problem.target
    if target.kind == "teacher":
        target = dataclasses.replace(target, width=problem.teacher_width(arch))
    record = {
        "problem": dataclasses.asdict(dataclasses.replace(problem, target=target)),
        "architecture": list(arch),
        "method": "auto",
        "starts": starts,
        "version": 2,
    }
    text = json.dumps(record, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def within_reach(arch: Architecture) -> bool:
    """Whether :func:`summary_levels` computes the levels of ``arch`` in reasonable
    time (its first width at most the automatic solver's :data:`LARGEST_WIDTH`)."""
    return arch[1] <= LARGEST_WIDTH[automatic_solver(arch[0])]


def summary_levels(problem: Problem, arch: Architecture) -> dict:
    """The levels record the summary compares runs with (free-knot in dimension 1,
    training otherwise; :data:`SUMMARY_STARTS` random starts per level)."""
    return risk_levels(problem, arch, "auto", SUMMARY_STARTS).as_record()


def compare_runs(
    record: dict, runs: list[dict], tolerance: float, slack: float = 1e-5
) -> dict:
    """The final risks of a cell's runs against the levels.

    A run with ``j`` first-layer neurons certified inactive at initialization keeps
    them inactive, so its final risk is at least ``R_(l1 - j)``.  Per ``j``: the
    number of runs, how many ended below the level by more than
    ``slack (R + Var f)`` (float32 risks, levels found by search; such a run proves
    the computed level is not the best of its ``l1 - j`` neurons), and how many
    ended at it: not below, and at most ``R + tolerance Var f``.

    Args:
        record: a levels record (:meth:`Levels.as_record`).
        runs: stored runs with ``certified_first_layer`` and ``final_risk``.
        tolerance: the cell's tolerance, relative to ``Var f``.

    Returns:
        ``risks`` and ``method`` (one entry per level, ``k = 0 .. l1``), the
        ``risk_method``, the rows ``by_inactive`` and the total ``below``.
    """
    risks = [level["risk"] for level in record["levels"]]
    width = len(risks) - 1
    variance = record["variance"]
    rows = []
    for inactive in sorted({run["certified_first_layer"] for run in runs}):
        bound = risks[width - inactive]
        finals = [
            run["final_risk"]
            for run in runs
            if run["certified_first_layer"] == inactive
            and run["final_risk"] is not None
        ]
        count = sum(run["certified_first_layer"] == inactive for run in runs)
        floor = bound - slack * (bound + variance)
        ceiling = bound + tolerance * variance
        rows.append(
            {
                "inactive": inactive,
                "level": width - inactive,
                "bound": bound,
                "runs": count,
                "at_level": sum(floor <= final <= ceiling for final in finals),
                "below": sum(final < floor for final in finals),
            }
        )
    return {
        "risks": risks,
        "method": [level["method"] for level in record["levels"]],
        "risk_method": record["risk_method"],
        "by_inactive": rows,
        "below": sum(row["below"] for row in rows),
    }
