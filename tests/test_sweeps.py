"""Sweeps: planning, extending a stored study, determinism, diverging runs."""

import copy

import pytest
from typer.testing import CliRunner

from relutrap import backends
from relutrap.api import summary
from relutrap.cli import app
from relutrap.experiment import SpecError, cells, parse_spec
from relutrap.store import DATABASE, StoreError, open_for_reading
from stored import assert_same_runs, stored_runs


def test_plan_cuts_cells_into_chunks_and_skips_stored_runs(tiny_spec):
    tiny_spec["parts"][0]["width"] = [3, 5]
    spec = parse_spec(tiny_spec)
    first, second = (cell for cell, _ in cells(spec))

    fresh, skipped = backends.plan(spec)
    resumed, skipped_after = backends.plan(
        spec, {first.identity: {0, 1, 2, 3, 5}, second.identity: {9}}
    )

    assert [(c.cell.hidden, c.runs) for c in fresh] == [
        ((3,), (0, 1, 2, 3)),
        ((3,), (4, 5, 6, 7)),
        ((5,), (0, 1, 2, 3)),
        ((5,), (4, 5, 6, 7)),
    ]
    assert set(skipped.values()) == {0}
    # A stored chunk is skipped; a partly stored one trains its missing runs only.
    assert [(c.cell.hidden, c.runs, c.planned) for c in resumed] == [
        ((3,), (4, 6, 7), 4),
        ((5,), (0, 1, 2, 3), 4),
        ((5,), (4, 5, 6, 7), 4),
    ]
    assert sorted(skipped_after.values()) == [0, 5]


def test_cells_that_share_a_short_label_are_told_apart_by_what_differs(tiny_spec):
    tiny_spec["parts"][0]["init"] = {"scheme": ["normal", "he_normal"]}
    spec = parse_spec(tiny_spec)

    planned, skipped = backends.plan(spec)

    labels = {chunk.label for chunk in planned}
    assert len(labels) == 2 and set(skipped) == labels
    assert {label.rsplit(" ", 1)[1] for label in labels} == {
        "init.scheme=normal",
        "init.scheme=he_normal",
    }


def test_chunks_shrink_to_the_memory_budget(tiny_spec):
    tiny_spec.update(chunk_size=1000, memory_budget_mb=16)
    tiny_spec["parts"][0].update(width=[2000], runs=64)
    spec = parse_spec(tiny_spec)
    (cell, _), *_ = cells(spec)

    planned, _ = backends.plan(spec)

    size = backends.chunk_size(spec, cell)
    assert 1 <= size < 64
    assert size * backends.engine.bytes_per_run(cell) <= 16 * 2**20
    assert all(len(chunk.runs) <= size for chunk in planned)
    assert sum(len(chunk.runs) for chunk in planned) == 64


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A directory holding the complete tiny study (8 runs, one cell)."""
    from conftest import TINY_SPEC

    directory = tmp_path_factory.mktemp("sweeps") / "out"
    backends.run_experiment(parse_spec(TINY_SPEC), directory)
    return directory


def copy_of(directory, tmp_path):
    target = tmp_path / "copy"
    target.mkdir()
    (target / DATABASE).write_bytes((directory / DATABASE).read_bytes())
    return target


def test_extend_adds_runs_and_cells_and_keeps_the_stored_runs(
    stored, tiny_spec, tmp_path
):
    out = copy_of(stored, tmp_path)
    before = stored_runs(out)
    extended = copy.deepcopy(tiny_spec)
    extended["runs"] = 12
    extended["parts"].append({**copy.deepcopy(tiny_spec["parts"][0]), "name": "v"})
    progress = []

    backends.run_experiment(
        parse_spec(extended),
        out,
        lambda count, label, trained: progress.append((count, trained)),
        extend=True,
    )
    backends.run_experiment(parse_spec(extended), tmp_path / "fresh")

    after = stored_runs(out)
    assert all(after[key] == row for key, row in before.items())
    assert len(after) == 24
    assert progress[0] == (8, False)
    assert sum(count for count, trained in progress if trained) == 16
    assert_same_runs(out, tmp_path / "fresh")
    assert [record["planned_runs"] for record in summary(out)] == [12, 12]


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda spec: spec["parts"][0].update(steps=40), "steps (30 -> 40)"),
        (
            lambda spec: spec["parts"][0]["optimizers"][0].update(learning_rate=0.1),
            "learning_rate (0.01 -> 0.1)",
        ),
        (lambda spec: spec.update(seed=4), "field seed: changed from 3 to 4"),
        (lambda spec: spec.update(dtype="float64"), "field dtype"),
        (lambda spec: spec.update(runs=4), "field runs: the cell"),
        (lambda spec: spec["parts"][0].update(name="x"), "part 'w'"),
    ],
    ids=["steps", "learning rate", "seed", "dtype", "fewer runs", "renamed part"],
)
def test_extend_refuses_to_change_stored_cells_naming_the_field(
    stored, tiny_spec, tmp_path, change, words
):
    out = copy_of(stored, tmp_path)
    before = (out / DATABASE).read_bytes()
    change(tiny_spec)

    with pytest.raises(SpecError, match="extending may only add runs or cells") as e:
        backends.run_experiment(parse_spec(tiny_spec), out, extend=True)

    assert words in str(e.value)
    assert (out / DATABASE).read_bytes() == before


def test_without_extend_more_runs_are_refused_with_a_hint(stored, tiny_spec, tmp_path):
    out = copy_of(stored, tmp_path)
    tiny_spec["runs"] = 12

    with pytest.raises(StoreError, match=r"differs in: runs \(8 -> 12\).*--extend"):
        backends.run_experiment(parse_spec(tiny_spec), out)


def test_without_extend_a_new_factor_value_is_named(stored, tiny_spec, tmp_path):
    out = copy_of(stored, tmp_path)
    tiny_spec["parts"][0]["init"] = {"scheme": ["normal", "he_normal"]}

    with pytest.raises(StoreError) as refused:
        backends.run_experiment(parse_spec(tiny_spec), out)

    assert "adds 1 new cell (init.scheme 'he_normal')" in str(refused.value)


def test_a_new_name_alone_is_refused_as_a_change_no_run_depends_on(
    stored, tiny_spec, tmp_path
):
    out = copy_of(stored, tmp_path)
    tiny_spec["name"] = "renamed"

    with pytest.raises(StoreError, match="no stored run depends on these"):
        backends.run_experiment(parse_spec(tiny_spec), out)


def test_a_changed_scheme_is_named_with_its_old_and_new_values(
    stored, tiny_spec, tmp_path
):
    out = copy_of(stored, tmp_path)
    tiny_spec["parts"][0]["init"] = {"scheme": ["he_uniform", "he_normal"]}

    with pytest.raises(SpecError) as refused:
        backends.run_experiment(parse_spec(tiny_spec), out, extend=True)

    message = str(refused.value)
    assert message.startswith(f"{out} holds the results of a spec")
    assert (
        "no new cell of its part keeps its init.scheme ('normal' -> 'he_uniform', "
        "'he_normal')" in message
    )


@pytest.mark.slow
@pytest.mark.parametrize("chunk_size", [1, 3])
def test_stored_results_do_not_depend_on_the_chunk_size(
    stored, tiny_spec, tmp_path, chunk_size
):
    tiny_spec["chunk_size"] = chunk_size

    backends.run_experiment(parse_spec(tiny_spec), tmp_path)

    assert_same_runs(tmp_path, stored)


@pytest.mark.slow
def test_diverging_runs_are_recorded_and_the_sweep_goes_on(tiny_spec, tmp_path):
    tiny_spec["runs"] = 4
    tiny_spec["parts"][0]["optimizers"] = [
        {"name": "sgd", "learning_rate": [1e6, 0.01]}
    ]

    backends.run_experiment(parse_spec(tiny_spec), tmp_path)

    runs = stored_runs(tmp_path).values()
    records = {record["learning_rate"]: record for record in summary(tmp_path)}
    diverged = [run for run in runs if run["diverged_step"] >= 0]
    assert len(runs) == 8 and len(diverged) == 4
    assert all(1 <= run["diverged_step"] <= 30 for run in diverged)
    assert all(run["final_risk"] is None for run in diverged)
    assert all(run["observed_nonconvergent"] == 1 for run in diverged)
    assert records[1e6]["observed_nonconvergent"]["fraction"] == 1.0
    assert records[0.01]["runs"] == 4
    assert all(run["final_risk"] is not None for run in runs if run not in diverged)


@pytest.mark.slow
def test_the_summary_table_shows_the_init_schemes_a_study_varies(
    stored, tiny_spec, tmp_path
):
    tiny_spec.update(runs=2, chunk_size=2)
    tiny_spec["parts"][0].update(steps=5, init={"scheme": ["normal", "he_normal"]})
    backends.run_experiment(parse_spec(tiny_spec), tmp_path)

    varied = CliRunner().invoke(app, ["summary", str(tmp_path)])
    plain = CliRunner().invoke(app, ["summary", str(stored)])

    assert varied.exit_code == 0, varied.output
    header = next(line for line in varied.stdout.splitlines() if "arch." in line)
    assert "init" in header.split() and "batch" not in header.split()
    assert "he_normal" in varied.stdout
    assert (
        "init"
        not in next(
            line for line in plain.stdout.splitlines() if "arch." in line
        ).split()
    )


def test_extend_accepts_a_new_name_and_description_and_stores_them(
    stored, tiny_spec, tmp_path
):
    out = copy_of(stored, tmp_path)
    before = stored_runs(out)
    tiny_spec.update(name="renamed", description="the same runs, relabelled")

    backends.run_experiment(parse_spec(tiny_spec), out, extend=True)

    with open_for_reading(out) as store:
        assert store.spec()["name"] == "renamed"
        assert store.spec()["description"] == "the same runs, relabelled"
    assert stored_runs(out) == before


def test_zero_steps_store_the_census_at_initialization_of_the_same_runs(
    stored, tiny_spec, tmp_path
):
    tiny_spec["parts"][0]["steps"] = 0

    backends.run_experiment(parse_spec(tiny_spec), tmp_path / "init")

    trained = sorted(stored_runs(stored).values(), key=lambda row: row["run_index"])
    untrained = sorted(
        stored_runs(tmp_path / "init").values(), key=lambda row: row["run_index"]
    )
    assert len(untrained) == len(trained) == 8
    for before, after in zip(untrained, trained):
        assert before["census"]["certified_init"] == after["census"]["certified_init"]
        assert before["certified_first_layer"] == after["certified_first_layer"]
        assert before["revived"] == 0
