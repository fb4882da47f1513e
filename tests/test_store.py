import sqlite3

import pytest

from relutrap import backends
from relutrap.api import summary
from relutrap.experiment import parse_spec
from relutrap.store import DATABASE, StoreError, open_for_reading, open_for_writing


def table_rows(directory) -> dict[str, list[tuple]]:
    """Every row of every table of the store, in a stable order."""
    connection = sqlite3.connect(directory / DATABASE)
    try:
        return {
            table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("experiment", "cells", "runs")
        }
    finally:
        connection.close()


def refuse_training(*args, **kwargs):
    raise AssertionError("a stored run was trained again")


def test_rerun_stores_each_run_once_and_trains_nothing(
    tiny_spec, tmp_path, monkeypatch
):
    spec = parse_spec(tiny_spec)
    progress = []

    backends.run_experiment(spec, tmp_path)
    first = table_rows(tmp_path)
    monkeypatch.setattr(backends.engine, "train_runs", refuse_training)
    backends.run_experiment(
        spec, tmp_path, lambda count, label, trained: progress.append((count, trained))
    )

    assert table_rows(tmp_path) == first
    assert len(first["cells"]) == 1
    assert sorted(row[1] for row in first["runs"]) == list(range(8))
    assert progress == [(8, False)]


def test_a_lost_chunk_is_computed_again_identically(tiny_spec, tmp_path):
    spec = parse_spec(tiny_spec)
    backends.run_experiment(spec, tmp_path)
    complete = table_rows(tmp_path)

    with sqlite3.connect(tmp_path / DATABASE) as connection:
        connection.execute("DELETE FROM runs WHERE run_index >= 4")
    connection.close()
    backends.run_experiment(spec, tmp_path)

    assert table_rows(tmp_path) == complete


def test_a_different_spec_is_refused_and_changes_nothing(tiny_spec, tmp_path):
    backends.run_experiment(parse_spec(tiny_spec), tmp_path)
    before = table_rows(tmp_path)
    tiny_spec["seed"] = 4

    with pytest.raises(StoreError, match="different spec"):
        backends.run_experiment(parse_spec(tiny_spec), tmp_path)

    assert table_rows(tmp_path) == before


def test_a_second_writer_is_refused(tiny_spec, tmp_path):
    with open_for_writing(tmp_path):
        with pytest.raises(StoreError, match="another relutrap process"):
            with open_for_writing(tmp_path):
                pass
        with pytest.raises(StoreError):
            backends.run_experiment(parse_spec(tiny_spec), tmp_path)

    with open_for_writing(tmp_path) as store:
        assert store.experiment() == {}


def test_output_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "results"
    path.write_text("not a directory")

    with pytest.raises(StoreError, match="not a directory"):
        with open_for_writing(path):
            pass


def test_reading_a_directory_without_results_fails_clearly(tmp_path):
    with pytest.raises(StoreError, match="no relutrap results"):
        with open_for_reading(tmp_path):
            pass
    with pytest.raises(StoreError, match="nowhere does not exist"):
        with open_for_reading(tmp_path / "nowhere"):
            pass
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / DATABASE).write_text("")
    with pytest.raises(StoreError, match=f"is a file; give .* {tmp_path}$"):
        with open_for_reading(tmp_path / DATABASE):
            pass


def test_stored_spec_and_versions_are_recorded(tiny_spec, tmp_path):
    spec = parse_spec(tiny_spec)
    backends.run_experiment(spec, tmp_path)

    with open_for_reading(tmp_path) as store:
        assert parse_spec(store.spec()) == spec
        experiment = store.experiment()
        [cell] = store.cells()
        runs = store.runs(cell["cell"])

    assert experiment["version.relutrap"]
    assert experiment["version.jax"]
    assert cell["runs"] == 8 and cell["optimal_risk"] == 0.0
    assert [run["run_index"] for run in runs] == list(range(8))
    assert all(run["revived"] == 0 for run in runs)


def test_an_incomplete_study_says_so_in_its_summary(tiny_spec, tmp_path):
    spec = parse_spec(tiny_spec)
    backends.run_experiment(spec, tmp_path)
    with sqlite3.connect(tmp_path / DATABASE) as connection:
        connection.execute("DELETE FROM runs WHERE run_index >= 4")
    connection.close()

    (record,) = summary(tmp_path)

    assert record["runs"] == 4
    assert record["planned_runs"] == 8
