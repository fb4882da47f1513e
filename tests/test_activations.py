import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relutrap import engine
from relutrap.analysis import summarize
from relutrap.backends import run_experiment
from relutrap.experiment import cells, parse_spec
from relutrap.networks import activation, realization
from relutrap.store import open_for_reading


def test_activations_match_their_formulas():
    z = jnp.linspace(-3.0, 3.0, 13)
    assert np.allclose(activation("relu")(z), np.maximum(z, 0))
    assert np.allclose(activation("leaky_relu", 0.2)(z), np.where(z >= 0, z, 0.2 * z))
    assert np.allclose(activation("softplus")(z), np.log1p(np.exp(z)), atol=1e-6)
    with pytest.raises(ValueError, match="unknown activation"):
        activation("tanh")


def test_a_leaky_neuron_with_negative_preactivations_still_gets_gradient():
    params = ((jnp.array([[1.0]]), jnp.array([-5.0])), (jnp.ones((1, 1)), jnp.zeros(1)))
    inputs = jnp.linspace(0.0, 1.0, 8)[:, None]
    for name, moves in (("relu", False), ("leaky_relu", True), ("softplus", True)):
        sigma = activation(name)
        gradient = jax.grad(lambda p, s=sigma: jnp.sum(realization(p, inputs, s)))(
            params
        )
        assert bool(jnp.any(gradient[0][0] != 0)) is moves, name


def test_relu_cells_keep_their_identity_and_stored_spec(tiny_spec, make_cell):
    relu = make_cell()
    assert "activation" not in relu._hashed_record()
    assert make_cell(activation="leaky_relu").identity != relu.identity
    assert make_cell(activation="softplus").stream != relu.stream
    dumped = parse_spec(tiny_spec).model_dump(mode="json")
    assert "activation" not in dumped["parts"][0]
    tiny_spec["parts"][0]["activation"] = "leaky_relu"
    tiny_spec["parts"][0]["negative_slope"] = 0.1
    ((cell, _),) = cells(parse_spec(tiny_spec))
    assert (cell.activation, cell.negative_slope) == ("leaky_relu", 0.1)


def test_a_bad_activation_is_a_spec_error(tiny_spec):
    tiny_spec["parts"][0]["activation"] = "tanh"
    with pytest.raises(ValueError, match="parts.0.activation"):
        parse_spec(tiny_spec)
    tiny_spec["parts"][0]["activation"] = "leaky_relu"
    tiny_spec["parts"][0]["negative_slope"] = 1.5
    with pytest.raises(ValueError, match="parts.0.negative_slope"):
        parse_spec(tiny_spec)


def test_leaky_relu_and_softplus_runs_have_no_certified_inactive_neuron(make_cell):
    relu = engine.train_runs(make_cell(), 5, range(16))
    assert relu.certified_init[:, 0].sum() > 0
    for name in ("leaky_relu", "softplus"):
        outcomes = engine.train_runs(make_cell(activation=name), 5, range(16))
        for field in engine.CENSUS_FIELDS:
            assert getattr(outcomes, field).sum() == 0, (name, field)
        assert not outcomes.collapsed.any()
        assert np.all(np.isfinite(outcomes.final_risk))
        assert not np.allclose(outcomes.final_risk, relu.final_risk)


def test_a_leaky_relu_study_summary_says_the_premise_fails(tiny_spec, tmp_path):
    tiny_spec["parts"][0]["activation"] = "leaky_relu"
    run_experiment(parse_spec(tiny_spec), tmp_path)
    with open_for_reading(tmp_path) as store:
        (record,) = summarize(store)
    assert record["activation"] == "leaky_relu"
    assert record["inactivity_premise"] is False
    assert record["some_first_layer_inactive"]["count"] == 0
    assert record["certified_nonconvergent"]["count"] == 0
    assert record["theory_some_first_layer_inactive"] == 0.0
