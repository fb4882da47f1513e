"""Data sets as problems: loading, validation, splits, epochs, exact censuses."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relutrap import datasets, engine, inactivity
from relutrap.analysis import best_run_verdicts
from relutrap.cells import Cell
from relutrap.datasets import DataError, DataSource
from relutrap.experiment import SpecError, cells, load_spec, parse_spec
from relutrap.init import Initialization
from relutrap.problems import Problem, optimal_risk

CSV = "a,b,y\n1,2,3\n4,5,6\n7,8,10\n2,0,1\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def source(path, **changes):
    fields = {
        "path": str(path),
        "inputs": ("a", "b"),
        "target": "y",
        "standardize": False,
        "holdout": 0.0,
    }
    fields.update(changes)
    return DataSource(**fields)


# The loader's error cases: each message names the file, the line and the column.


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a,b,y\n1,2,3\n4,x,6\n", ["line 3", "column 'b'", "not a number: 'x'"]),
        ("a,b,y\n1,2,3\n4,5,NaN\n", ["line 3", "column 'y'", "not a finite"]),
        ("a,b,y\n1,2,3\n4,,6\n", ["line 3", "column 'b'", "empty field"]),
        ("a,b,y\n1,2,3\n\n4,5,inf\n", ["line 4", "column 'y'", "not a finite"]),
        ('a,b,y\n"1\n",2,3\n4,z,6\n', ["line 4", "column 'b'"]),
        ("a,b,y\n1,2,3\n4,5\n", ["line 3, column 'y'", "ragged row: 2 fields"]),
        ("a,b,y\n1,2,3\n4,5,6,7\n", ["line 3, column 4", "ragged row: 4 fields"]),
        ("a,c,y\n1,2,3\n", ["line 1", "column 'b'", "no such column"]),
    ],
)
def test_bad_csv_names_file_line_and_column(tmp_path, text, where):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(DataError) as error:
        datasets.load(source(path))
    message = str(error.value)
    assert message.startswith(str(path))
    for part in where:
        assert part in message


@pytest.mark.parametrize("text", ["", "   \n\n"])
def test_empty_csv_is_refused(tmp_path, text):
    path = write(tmp_path, "empty.csv", text)
    with pytest.raises(DataError, match=r"empty\.csv: empty file"):
        datasets.load(source(path))


def test_header_without_rows_is_refused(tmp_path):
    path = write(tmp_path, "header.csv", "a,b,y\n")
    with pytest.raises(DataError, match="header.csv: no data rows"):
        datasets.load(source(path))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.csv: no such file"):
        datasets.load(source(tmp_path / "nowhere.csv"))


def test_bad_numpy_files_name_file_row_and_column(tmp_path):
    npz = tmp_path / "ragged.npz"
    np.savez(npz, a=np.arange(4.0), b=np.arange(3.0), y=np.arange(4.0))
    with pytest.raises(DataError, match=r"ragged\.npz, row 4, column 'b': ragged"):
        datasets.load(source(npz))

    table = np.array([[1.0, 2.0, 3.0], [4.0, np.nan, 6.0]])
    npy = tmp_path / "nan.npy"
    np.save(npy, table)
    with pytest.raises(DataError, match=r"nan\.npy, row 2, column '1': not a finite"):
        datasets.load(source(npy, inputs=("0", "1"), target="2"))

    words = tmp_path / "words.npz"
    np.savez(words, a=np.array(["1", "oops"]), b=np.zeros(2), y=np.zeros(2))
    with pytest.raises(DataError, match=r"words\.npz, row 2, column 'a': not a number"):
        datasets.load(source(words))

    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"objects\.npy: not a readable array"):
        datasets.load(source(objects))

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not numpy at all")
    with pytest.raises(DataError, match=r"garbage\.npz: not a NumPy file") as error:
        datasets.load(source(garbage))
    assert "pickle" not in str(error.value)

    fine = tmp_path / "fine.npz"
    np.savez(fine, a=np.arange(4.0), b=np.arange(4.0), y=np.arange(4.0))
    with pytest.raises(DataError, match=r"fine\.npz, column 'c': no such column"):
        datasets.load(source(fine, inputs=("a", "c"), target="y"))


def test_malformed_numpy_files_are_refused_naming_them(tmp_path):
    import zipfile

    fine = tmp_path / "fine.npy"
    np.save(fine, np.ones((8, 3)))
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(fine.read_bytes()[:-30])
    bad_zip = tmp_path / "bad.npz"
    bad_zip.write_bytes(b"PK\x03\x04" + bytes(range(200)))
    junk_member = tmp_path / "junk.npz"
    with zipfile.ZipFile(junk_member, "w") as archive:
        archive.writestr("a.npy", b"junk")
        archive.writestr("y.npy", b"junk")
    text_member = tmp_path / "text.npz"
    with zipfile.ZipFile(text_member, "w") as archive:
        archive.writestr("a.txt", b"1 2 3")

    for path, words in [
        (truncated, "not a readable array"),
        (bad_zip, "not a readable array"),
        (junk_member, "member 'a': not a NumPy array"),
        (text_member, "member 'a.txt': not a NumPy array"),
    ]:
        with pytest.raises(DataError) as error:
            datasets.load(source(path, inputs=("a",), target="y"))
        assert str(error.value).startswith(str(path)) and words in str(error.value)


def test_a_csv_without_header_line_is_refused(tmp_path):
    path = write(tmp_path, "bare.csv", "0,1,2\n1,2,3\n")
    with pytest.raises(DataError, match=r"bare\.csv, line 1: the header holds only"):
        datasets.load(source(path, target="2"))


def test_an_input_named_twice_is_refused(tmp_path):
    path = write(tmp_path, "table.csv", CSV)
    with pytest.raises(DataError, match=r"table\.csv, column 'a': named twice"):
        datasets.load(source(path, inputs=("a", "a")))


def test_unknown_suffix_is_refused(tmp_path):
    path = write(tmp_path, "data.txt", CSV)
    with pytest.raises(DataError, match=r"data\.txt: unknown kind of file"):
        datasets.load(source(path))


# Loading.


def test_csv_and_numpy_files_give_the_same_data(tmp_path):
    csv_path = write(tmp_path, "table.csv", CSV)
    rows = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 10], [2, 0, 1]], dtype=float)
    npz = tmp_path / "table.npz"
    np.savez(npz, a=rows[:, 0], b=rows[:, 1], y=rows[:, 2])
    structured = np.zeros(4, dtype=[("a", "f8"), ("b", "i4"), ("y", "f8")])
    for j, name in enumerate("aby"):
        structured[name] = rows[:, j]
    npy = tmp_path / "table.npy"
    np.save(npy, structured)

    loaded = [datasets.load(source(path)) for path in (csv_path, npz, npy)]

    for dataset in loaded:
        order = np.argsort(dataset.train_targets)
        np.testing.assert_array_equal(
            dataset.train_inputs[order], rows[np.argsort(rows[:, 2])][:, :2]
        )
        assert dataset.columns == ("a", "b") and dataset.target == "y"
        assert dataset.digest == loaded[0].digest
    with pytest.raises(ValueError):
        loaded[0].train_inputs[0, 0] = 1.0  # the cached arrays are read-only


def test_inputs_default_to_every_other_column(tmp_path):
    path = write(tmp_path, "table.csv", CSV)
    dataset = datasets.load(source(path, inputs=()))
    assert dataset.columns == ("a", "b")


def test_diabetes_ships_with_scikit_learn():
    dataset = datasets.load(DataSource(dataset="diabetes", holdout=0.25))
    assert dataset.columns[:3] == ("age", "sex", "bmi")
    assert dataset.train_inputs.shape == (442 - 110, 10)
    assert dataset.holdout_inputs.shape == (110, 10)
    assert dataset.target == "target"


def test_standardization_uses_the_training_set_only(tmp_path):
    rng = np.random.default_rng(0)
    rows = rng.normal([5.0, -3.0, 100.0], [2.0, 0.5, 30.0], (50, 3))
    npz = tmp_path / "table.npz"
    np.savez(npz, a=rows[:, 0], b=rows[:, 1], y=rows[:, 2])
    raw = datasets.load(source(npz, holdout=0.2))
    scaled = datasets.load(source(npz, holdout=0.2, standardize=True))

    np.testing.assert_allclose(scaled.train_inputs.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(scaled.train_inputs.std(axis=0), 1, rtol=1e-12)
    assert abs(scaled.train_targets.mean()) < 1e-12
    assert scaled.train_targets.std() == pytest.approx(1, rel=1e-12)
    centre, scale = raw.train_inputs.mean(axis=0), raw.train_inputs.std(axis=0)
    np.testing.assert_allclose(
        scaled.holdout_inputs, (raw.holdout_inputs - centre) / scale, rtol=1e-12
    )
    expected = (
        raw.holdout_targets - raw.train_targets.mean()
    ) / raw.train_targets.std()
    np.testing.assert_allclose(scaled.holdout_targets, expected, rtol=1e-12)


def test_split_is_fixed_by_its_seed_and_capped():
    train, held = datasets.split(100, 0.3, 7, 0)
    again, held_again = datasets.split(100, 0.3, 7, 0)
    other, _ = datasets.split(100, 0.3, 8, 0)
    capped, held_capped = datasets.split(100, 0.3, 7, 20)

    np.testing.assert_array_equal(train, again)
    np.testing.assert_array_equal(held, held_again)
    assert len(held) == 30 and len(train) == 70
    assert sorted(np.concatenate([train, held])) == list(range(100))
    assert not np.array_equal(train, other)
    np.testing.assert_array_equal(capped, train[:20])
    np.testing.assert_array_equal(held_capped, held)


def test_changed_content_is_detected(tmp_path):
    path = write(tmp_path, "table.csv", CSV)
    first = datasets.load(source(path))
    write(tmp_path, "table.csv", CSV.replace("10", "11"))
    datasets._prepare.cache_clear()
    with pytest.raises(DataError, match="content changed"):
        datasets.load(source(path, digest=first.digest))


# Specs.


def data_spec(data, **part):
    fields = {
        "name": "d",
        "width": [2],
        "batch_size": 2,
        "steps": 4,
        "problem": {"data": data},
        "optimizers": [{"name": "sgd", "learning_rate": 0.1}],
    }
    fields.update(part)
    return {"name": "data", "runs": 2, "parts": [fields]}


def test_spec_paths_are_relative_to_the_spec_file(tmp_path, monkeypatch):
    (tmp_path / "sets").mkdir()
    write(tmp_path / "sets", "table.csv", CSV)
    spec = tmp_path / "study.toml"
    spec.write_text(
        'name = "s"\nruns = 2\n[[parts]]\nname = "d"\nwidth = [2]\nepochs = 3\n'
        "batch_size = 2\n"
        'problem = { data = { path = "sets/table.csv", target = "y", holdout = 0.25 }'
        " }\n"
        '[[parts.optimizers]]\nname = "sgd"\nlearning_rate = 0.1\n'
    )
    monkeypatch.chdir("/")

    parsed = load_spec(spec)
    (cell, runs), *_ = cells(parsed)

    assert cell.problem.data.path == str(tmp_path / "sets" / "table.csv")
    assert cell.architecture == (2, 2, 1)
    assert cell.steps == 3 * (3 // 2)  # 3 training rows after holding out 1
    stored = json.loads(json.dumps(parsed.model_dump(mode="json")))
    assert stored["parts"][0]["problem"]["data"]["digest"]
    assert "steps" not in stored["parts"][0]
    again = cells(parse_spec(stored, "stored spec"))[0][0]
    assert again.identity == cell.identity


def test_bad_data_file_is_a_spec_error_naming_file_line_and_column(tmp_path):
    path = write(tmp_path, "bad.csv", "a,b,y\n1,2,3\n4,x,6\n")
    data = {"path": str(path), "target": "y"}
    with pytest.raises(SpecError) as error:
        parse_spec(data_spec(data))
    message = str(error.value)
    assert "parts.0.problem.data" in message
    assert f"{path}, line 3, column 'b'" in message


@pytest.mark.parametrize(
    ("data", "part", "complaint"),
    [
        ({"dataset": "diabetes"}, {"epochs": 2, "steps": 5}, "steps' or 'epochs"),
        (
            {"dataset": "diabetes"},
            {"batch_size": 1000},
            "parts.0: batch_size: 1000 exceeds the 354",
        ),
        ({"dataset": "diabetes", "path": "x.csv"}, {}, "either 'path'"),
        ({"path": "x.csv"}, {}, "target"),
        ({"dataset": "iris"}, {}, "dataset"),
        ({"dataset": "diabetes", "holdout": 1.0}, {}, "holdout"),
    ],
)
def test_bad_data_specs_name_the_field(data, part, complaint):
    with pytest.raises(SpecError, match=complaint):
        parse_spec(data_spec(data, **part))


def test_data_excludes_the_box_fields():
    spec = data_spec({"dataset": "diabetes"})
    spec["parts"][0]["problem"]["dimension"] = 3
    with pytest.raises(SpecError, match=r"\['dimension'\] not used with a data set"):
        parse_spec(spec)
    spec = data_spec({"dataset": "diabetes"}, steps=None, epochs=1)
    del spec["parts"][0]["steps"]
    spec["parts"][0]["problem"] = {"target": "sin"}
    with pytest.raises(SpecError, match="epochs: only a data set"):
        parse_spec(spec)


def test_cells_without_data_keep_their_identity():
    # The identities of these cells before data sets existed.
    plain = Cell(
        "w", Problem(evaluation_size=64), (3,), Initialization(), "adam", 0.01, steps=30
    )
    assert (plain.identity, plain.stream) == ("29335d39726335f5", 813157690)
    assert "data" not in plain.as_record()["problem"]


def test_a_data_cell_is_named_by_content_not_place(tmp_path):
    first = write(tmp_path, "one.csv", CSV)
    (tmp_path / "elsewhere").mkdir()
    second = write(tmp_path / "elsewhere", "two.csv", CSV)
    a, b = (
        cells(parse_spec(data_spec({"path": str(path), "target": "y"})))[0][0]
        for path in (first, second)
    )
    assert a.identity == b.identity and a.stream == b.stream
    assert a.problem.data.path != b.problem.data.path


# Training on a fixed training set.


@pytest.fixture(scope="module")
def wave(tmp_path_factory) -> DataSource:
    """80 noisy samples of a sine on [0, 3] in a CSV file; 64 train, 16 held out."""
    rng = np.random.default_rng(1)
    x = np.sort(rng.uniform(0, 3, 80))
    y = np.sin(2 * x) + 0.1 * rng.standard_normal(80)
    path = tmp_path_factory.mktemp("wave") / "wave.csv"
    path.write_text("x,y\n" + "".join(f"{a:.17g},{b:.17g}\n" for a, b in zip(x, y)))
    return DataSource(path=str(path), target="y", holdout=0.2)


def data_cell(data: DataSource, **changes) -> Cell:
    fields = {
        "part": "d",
        "problem": Problem(dimension=1, data=data),
        "hidden": (4,),
        "init": Initialization(),
        "optimizer": "sgd",
        "learning_rate": 0.05,
        "steps": 12,
        "batch_size": 16,
    }
    fields.update(changes)
    return Cell(**fields)


def test_each_epoch_visits_distinct_examples_in_a_per_run_order(wave):
    cell = data_cell(wave)
    batch = engine._batch_source(cell.problem, cell.architecture, 16, jnp.float32)
    key = jax.random.key(5)
    inputs = datasets.load(cell.problem.data).train_inputs.astype(np.float32)

    def rows(data_key, step):
        drawn, _ = batch(data_key, jnp.int32(step))
        return [int(np.flatnonzero((inputs == row).all(axis=1))[0]) for row in drawn]

    epoch = [index for step in range(1, 5) for index in rows(key, step)]
    assert len(set(epoch)) == 64  # 4 batches of 16 cover the 64 examples once
    assert rows(key, 5) != rows(key, 1)  # the next epoch is reshuffled
    assert rows(key, 3) == rows(key, 3)
    assert rows(jax.random.key(6), 1) != rows(key, 1)


@pytest.mark.slow
def test_training_on_data_is_deterministic_per_run_and_chunk_invariant(wave):
    cell = data_cell(wave)
    together = engine.train_runs(cell, 11, [0, 1, 2])
    alone = engine.train_runs(cell, 11, [2])

    np.testing.assert_allclose(together.final_risk[2], alone.final_risk[0], rtol=1e-6)
    np.testing.assert_allclose(
        together.holdout_risk[2], alone.holdout_risk[0], rtol=1e-6
    )
    assert together.holdout_risk.shape == (3,)
    assert len(set(np.round(together.final_risk, 6))) == 3


def test_risks_are_empirical_on_training_and_held_out_sets(wave):
    cell = data_cell(wave, steps=0)
    outcomes = engine.train_runs(cell, 0, [0])
    key = jax.random.fold_in(
        jax.random.fold_in(jax.random.key(0, impl="threefry2x32"), cell.stream), 0
    )
    from relutrap.init import initialize
    from relutrap.networks import realization

    params = initialize(jax.random.fold_in(key, 0), cell.architecture, cell.init)
    dataset = datasets.load(cell.problem.data)
    for inputs, targets, measured in (
        (dataset.train_inputs, dataset.train_targets, outcomes.final_risk[0]),
        (dataset.holdout_inputs, dataset.holdout_targets, outcomes.holdout_risk[0]),
    ):
        outputs = realization(params, jnp.asarray(inputs, jnp.float32))
        expected = np.mean((np.asarray(outputs, np.float64) - targets) ** 2)
        assert measured == pytest.approx(expected, rel=1e-5)
    assert optimal_risk(cell.problem, cell.architecture) is None


def test_finite_census_is_exact_on_every_layer():
    rng = np.random.default_rng(3)
    inputs = rng.normal(size=(40, 3))
    for _ in range(20):
        params = tuple(
            (rng.normal(size=(m, k)), rng.normal(size=k) - 0.5)
            for m, k in ((3, 5), (5, 4), (4, 1))
        )
        census = inactivity.finite_census(params, jnp.asarray(inputs))
        activations, exact = inputs, []
        for weights, bias in params[:-1]:
            pre = activations @ weights + bias
            exact.append((pre <= 0).all(axis=0))
            activations = np.maximum(pre, 0)
        for layer, truth in enumerate(exact):
            np.testing.assert_array_equal(census.bounded[layer], truth)
            np.testing.assert_array_equal(census.observed[layer], truth)
        np.testing.assert_array_equal(census.certified[0], exact[0])
        signs = (params[1][1] <= 0) & (params[1][0] <= 0).all(axis=0)
        np.testing.assert_array_equal(census.certified[1], signs)


@pytest.mark.slow
def test_a_neuron_dead_on_the_training_set_stays_dead(wave):
    cell = data_cell(wave, hidden=(16,), steps=40, learning_rate=0.1)
    outcomes = engine.train_runs(cell, 1, list(range(8)))
    # In dimension 1 about a quarter of the first-layer neurons start dead.
    assert outcomes.certified_init[:, 0].sum() > 8
    assert outcomes.revived.sum() == 0
    assert np.all(outcomes.certified_end[:, 0] >= outcomes.certified_init[:, 0])
    assert np.all(outcomes.observed_init == outcomes.bounded_init)


def test_first_layer_probability_on_a_finite_set_matches_its_definition():
    cell = data_cell(DataSource(dataset="diabetes", max_train=64), hidden=(3,))
    cell = dataclasses.replace(
        cell, problem=dataclasses.replace(cell.problem, dimension=10)
    )
    p = datasets.first_layer_inactivity(cell.init, cell.architecture, cell.problem.data)
    inputs = datasets.load(cell.problem.data).train_inputs
    rng = np.random.default_rng(0)
    weights, biases = rng.standard_normal((10, 200_000)), rng.standard_normal(200_000)
    direct = np.mean((inputs @ weights).max(axis=0) + biases <= 0)
    spread = math.hypot(
        math.sqrt(max(direct * (1 - direct), 1e-6) / 200_000), p.standard_error
    )
    assert p.method == "quasi-monte carlo" and 0 < p.standard_error < 1e-3
    assert abs(p.value - direct) <= 4.5 * spread


def test_observed_verdicts_relative_to_the_best_run():
    runs = [
        {"final_risk": 0.50, "diverged_step": -1},
        {"final_risk": 0.505, "diverged_step": -1},
        {"final_risk": 0.70, "diverged_step": -1},
        {"final_risk": None, "diverged_step": 3},
        {"final_risk": 0.10, "diverged_step": 7},
    ]
    verdicts, best = best_run_verdicts(runs, tolerance=0.01, variance=2.0)
    assert best == 0.50
    assert verdicts == [False, False, True, True, True]


def test_best_constant_is_optimal_only_for_equal_means_per_input():
    def dataset(inputs, targets):
        inputs = np.asarray(inputs, float).reshape(len(targets), -1)
        empty = np.zeros((0, inputs.shape[1]))
        return datasets.Dataset(
            inputs, np.asarray(targets, float), empty, np.zeros(0), ("a",), "y", ""
        )

    # Equal inputs with labels 0 and 2, and a third input with label 1: every group
    # has mean 1, so no function of the inputs beats the constant 1.
    assert datasets.best_constant_is_optimal(dataset([0, 0, 1], [0, 2, 1]))
    assert not datasets.best_constant_is_optimal(dataset([0, 0, 1], [0, 2, 2]))
    assert datasets.best_constant_is_optimal(dataset([0, 1, 2], [3, 3, 3]))


def test_a_store_from_before_held_out_risks_gains_their_column(tmp_path):
    import sqlite3

    from relutrap import store

    old_schema = store._SCHEMA.replace("    holdout_risk REAL,\n", "")
    connection = sqlite3.connect(tmp_path / store.DATABASE)
    connection.executescript(old_schema)
    connection.close()

    with store.open_for_writing(tmp_path) as opened:
        columns = [
            row[1] for row in opened.connection.execute("PRAGMA table_info(runs)")
        ]
    assert "holdout_risk" not in old_schema
    assert columns[-1] == "holdout_risk"
