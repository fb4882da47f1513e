import pandas as pd
import pytest

import relutrap
from relutrap import SpecError


def test_study_returns_one_record_per_cell(tiny_spec, tmp_path):
    tiny_spec["parts"][0]["optimizers"].append({"name": "sgd", "learning_rate": 0.1})

    records = relutrap.study(tiny_spec, out=tmp_path, runs=4)
    frame = relutrap.study(tiny_spec, out=tmp_path, runs=4, as_frame=True)

    assert [record["optimizer"] for record in records] == ["adam", "sgd"]
    for record in records:
        assert record["runs"] == 4
        assert record["revived"] == 0
        assert record["architecture"] == [1, 3, 1]
        assert record["p_first_layer_neuron"] == pytest.approx(3 / 8)
        assert record["theory_some_first_layer_inactive"] == pytest.approx(
            1 - (5 / 8) ** 3
        )
        dead = record["some_first_layer_inactive"]["count"]
        assert record["certified_nonconvergent"]["count"] == dead
        assert record["without_certified_inactive"] == 4 - dead
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 2
    assert list(frame["optimizer"]) == ["adam", "sgd"]
    assert (frame["certified_nonconvergent.runs"] == 4).all()


def test_study_with_a_bad_spec_writes_nothing(tiny_spec, tmp_path):
    tiny_spec["parts"][0]["width"] = [0]

    with pytest.raises(SpecError):
        relutrap.study(tiny_spec, out=tmp_path / "out")

    assert not (tmp_path / "out").exists()


def test_summary_matches_the_study(tiny_spec, tmp_path):
    records = relutrap.study(tiny_spec, out=tmp_path, runs=4)

    assert relutrap.summary(tmp_path) == records


def test_cells_that_differ_only_in_steps_are_both_run(tiny_spec, tmp_path):
    optimizers = tiny_spec["parts"][0]["optimizers"]
    optimizers.append({"name": "adam", "learning_rate": 0.01, "steps": 10})

    records = relutrap.study(tiny_spec, out=tmp_path, runs=4)

    assert sorted(record["steps"] for record in records) == [10, 30]


def test_a_gradient_transformation_from_python_trains_a_cell(tiny_spec, tmp_path):
    import optax

    tiny_spec["parts"][0]["steps"] = 5
    tiny_spec["parts"][0]["optimizers"] = [
        {"name": "custom:decaying", "learning_rate": 0.01}
    ]
    with pytest.raises(SpecError, match="decaying"):
        relutrap.study(tiny_spec, out=tmp_path / "missing", runs=2)

    transform = optax.adamw(0.01, weight_decay=0.1)
    records = relutrap.study(
        tiny_spec, out=tmp_path, runs=2, custom={"decaying": transform}
    )

    assert records[0]["optimizer"] == "custom:decaying"
    assert records[0]["premise_holds"] is False
    assert relutrap.summary(tmp_path)[0]["premise_holds"] is None
