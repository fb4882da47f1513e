"""Ball and Gaussian input laws: sampling, certificates, specs, a study end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relutrap import api, engine
from relutrap.domains import Ball, Gaussian
from relutrap.experiment import SpecError, cells, parse_spec
from relutrap.inactivity import census, certified, partition
from relutrap.init import Initialization, initialize
from relutrap.problems import Problem, evaluation_inputs, sample_inputs

BALL = Problem(dimension=3, shape="ball", center=(1.0, -0.5, 0.0), radius=2.0)
GAUSSIAN = Problem(dimension=2, shape="gaussian", center=(0.5,), radius=3.0)


def test_ball_inputs_are_uniform_in_the_ball():
    inputs = np.asarray(sample_inputs(jax.random.key(0), BALL, 100_000, jnp.float32))
    distance = np.linalg.norm(inputs - np.array(BALL.center), axis=1) / BALL.radius

    assert np.all(distance <= 1 + 1e-5)
    # |X - c| / r has distribution function t^3 in dimension 3.
    for t in (0.3, 0.6, 0.9):
        assert np.mean(distance <= t) == pytest.approx(t**3, abs=0.01)
    assert np.mean(inputs, axis=0) == pytest.approx(BALL.center, abs=0.02)


def test_gaussian_inputs_have_their_mean_and_scale():
    inputs = np.asarray(
        sample_inputs(jax.random.key(1), GAUSSIAN, 100_000, jnp.float32)
    )

    assert np.mean(inputs, axis=0) == pytest.approx([0.5, 0.5], abs=0.05)
    assert np.std(inputs, axis=0) == pytest.approx([3.0, 3.0], abs=0.05)
    assert GAUSSIAN.domain() == Gaussian((0.5, 0.5), 3.0)


def test_one_dimensional_ball_is_evaluated_on_its_interval():
    problem = Problem(shape="ball", center=(2.0,), radius=0.5, evaluation_size=4)
    grid = np.asarray(evaluation_inputs(problem))[:, 0]

    assert grid == pytest.approx([1.625, 1.875, 2.125, 2.375])
    assert "midpoint rule" in problem.risk_method()
    assert "mean over" in GAUSSIAN.risk_method()


def test_the_ball_certificate_is_exact():
    params = initialize(jax.random.key(2), (3, 400, 1), Initialization("normal"))
    (weights, bias), _ = params
    inactive = np.asarray(certified(params, BALL)[0])
    # The maximizer of w . x over the ball is c + r w / |w|.
    w = np.asarray(weights)
    best = np.array(BALL.center)[:, None] + BALL.radius * w / np.linalg.norm(w, axis=0)
    largest = np.sum(w * best, axis=0) + np.asarray(bias)
    inputs = sample_inputs(jax.random.key(3), BALL, 4096, jnp.float32)
    seen = np.asarray(inputs @ weights + bias)

    assert 0 < inactive.sum() < 400
    assert np.array_equal(inactive, largest <= 1e-5)
    assert np.all(seen[:, inactive] <= 1e-5)


@pytest.mark.slow
def test_bounded_neurons_include_certified_ones_on_every_shape():
    params = initialize(jax.random.key(4), (3, 64, 4, 1), Initialization("normal"))
    for problem in (BALL, Problem(dimension=3, shape="gaussian")):
        inputs = evaluation_inputs(problem)
        layers = census(params, problem, inputs, partition(problem))
        for proven, bounded in zip(layers.certified, layers.bounded):
            assert np.all(np.asarray(bounded) >= np.asarray(proven))
    gaussian = census(
        params, Problem(dimension=3, shape="gaussian"), inputs, partition(BALL)
    )
    assert not np.any(np.asarray(gaussian.certified[0]))


def _part(name, problem, **more):
    return {
        "name": name,
        "width": [2],
        "steps": 10,
        "problem": {"evaluation_size": 64, **problem},
        "optimizers": [{"name": "sgd", "learning_rate": 0.1}],
        **more,
    }


def test_specs_of_other_shapes_are_checked():
    def parse(problem):
        return parse_spec({"parts": [_part("a", problem)]})

    with pytest.raises(SpecError, match="domain: only for a box"):
        parse({"shape": "ball", "domain": [0.0, 1.0]})
    with pytest.raises(SpecError, match="center, radius: only for a ball"):
        parse({"center": [1.0], "radius": 2.0})
    with pytest.raises(SpecError, match="center: 2 coordinates; give 1 or 3"):
        parse({"shape": "gaussian", "dimension": 3, "center": [0.0, 1.0]})
    with pytest.raises(SpecError, match="radius"):
        parse({"shape": "ball", "radius": 0.0})
    box = parse({}).model_dump(mode="json")["parts"][0]["problem"]
    assert "shape" not in box and "center" not in box
    ball = parse({"shape": "ball", "center": [1.0]})
    assert parse_spec(ball.model_dump(mode="json")) == ball
    ((cell, _),) = cells(ball)
    assert cell.problem.domain() == Ball((1.0,), 1.0)


@pytest.mark.slow
def test_a_study_on_a_ball_and_on_gaussian_inputs(tmp_path):
    spec = {
        "name": "shapes",
        "runs": 16,
        "parts": [
            _part("ball", {"dimension": 2, "shape": "ball", "center": [0.5]}),
            _part("gaussian", {"shape": "gaussian"}, depth=[1, 2]),
        ],
    }

    records = api.study(spec, out=tmp_path / "out")
    fits = api.rate_fits(tmp_path / "out")

    ball, shallow, deep = records
    assert ball["domain"].startswith("ball of radius 1")
    assert ball["p_method"] == "quasi-monte carlo" and 0 < ball["p_first_layer_neuron"]
    assert shallow["p_first_layer_neuron"] == 0.0 and shallow["p_method"] == "exact"
    assert shallow["some_first_layer_inactive"]["count"] == 0
    assert deep["theory_some_certified_inactive"] == pytest.approx(1 - 0.875**2)
    for record in records:
        assert record["revived"] == 0
        assert 0 <= record["bounded_revived"] <= record["bounded_only_init"]
    assert {fit["axis"] for fit in fits} == {"depth"}


@pytest.mark.slow
def test_revivals_after_interval_bounds_are_counted_per_layer(make_cell):
    cell = make_cell(hidden=(2, 2, 2, 2), steps=100, learning_rate=0.1, optimizer="sgd")
    outcomes = engine.train_runs(cell, 0, range(32))

    bounded_only = outcomes.bounded_init - outcomes.certified_init
    assert outcomes.bounded_revived.shape == (32, 4)
    assert np.all(outcomes.bounded_revived >= 0)
    assert np.all(outcomes.bounded_revived <= bounded_only)
    assert np.all(outcomes.revived == 0)
    # Unlike certified neurons, neurons proven inactive by interval bounds alone can
    # come back once the layers below them move: these runs show it.
    assert outcomes.bounded_revived.sum() > 0
