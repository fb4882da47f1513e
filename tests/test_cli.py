import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import relutrap as relutrap_api
from relutrap.cli import app

RELUTRAP = Path(sys.executable).parent / "relutrap"

TINY_TOML = """\
name = "tiny"
runs = 4
[[parts]]
name = "w"
width = [1, 2]
steps = 20
problem = { evaluation_size = 64 }
[[parts.optimizers]]
name = "adam"
learning_rate = 0.01

[[parts]]
name = "s"
width = [2]
steps = 20
problem = { evaluation_size = 64, target = "square" }
[[parts.optimizers]]
name = "sgd"
learning_rate = 0.1
"""

SUMMARY_KEYS = {
    "certified_nonconvergent",
    "observed_nonconvergent",
    "some_first_layer_inactive",
    "theory_some_first_layer_inactive",
    "revived",
    "converged_without_certified_inactive",
    "collapsed",
    "tolerance",
}


def relutrap(*arguments, cache: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": "200"}
    return subprocess.run(
        [str(RELUTRAP), *map(str, arguments)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )


def words(text: str) -> str:
    """The text with every run of white space made one space (undoes wrapping)."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny study run through the command line: (its directory, the run's result)."""
    root = tmp_path_factory.mktemp("cli")
    spec = root / "tiny.toml"
    spec.write_text(TINY_TOML)
    out = root / "out"
    return out, relutrap("run", spec, "--out", out, cache=root / "cache")


@pytest.mark.slow
def test_run_succeeds(study):
    out, result = study

    assert result.returncode == 0, result.stderr
    assert (out / "results.sqlite").is_file()


@pytest.mark.slow
def test_summary_as_json_has_one_record_per_cell(study, tmp_path):
    out, _ = study

    result = relutrap("summary", out, "--format", "json", cache=tmp_path)
    records = json.loads(result.stdout)

    assert result.returncode == 0, result.stderr
    assert [record["architecture"] for record in records] == [
        [1, 1, 1],
        [1, 2, 1],
        [1, 2, 1],
    ]
    for record in records:
        assert SUMMARY_KEYS <= set(record)
        assert record["revived"] == 0
        assert record["runs"] == 4
        assert record["certified_nonconvergent"]["runs"] == 4
        assert 0 <= record["theory_some_first_layer_inactive"] <= 1


@pytest.mark.slow
def test_summary_as_csv_has_a_header_and_a_row_per_cell(study, tmp_path):
    out, _ = study

    result = relutrap("summary", out, "--format", "csv", cache=tmp_path)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))

    assert result.returncode == 0, result.stderr
    assert len(rows) == 3
    assert {"part", "optimizer", "certified_nonconvergent.fraction", "revived"} <= set(
        rows[0]
    )
    assert [row["revived"] for row in rows] == ["0", "0", "0"]
    # The square target has no known optimal risk: its observed verdict is empty.
    assert rows[0]["observed_nonconvergent.fraction"] != ""
    assert rows[2]["observed_nonconvergent.fraction"] == ""


@pytest.mark.slow
def test_rerun_with_other_runs_is_refused_naming_the_difference(study, tmp_path):
    out, _ = study
    spec = out.parent / "tiny.toml"
    before = (out / "results.sqlite").read_bytes()

    result = relutrap("run", spec, "--out", out, "--runs", 5, cache=tmp_path)

    assert result.returncode == 2
    assert "differs in: runs" in words(result.stderr)
    assert (out / "results.sqlite").read_bytes() == before


def test_output_below_a_regular_file_is_refused_clearly(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_TOML)
    (tmp_path / "afile").write_text("keep me")

    result = relutrap(
        "run", spec, "--out", tmp_path / "afile" / "sub", cache=tmp_path / "cache"
    )

    assert result.returncode == 2
    assert "cannot create" in words(result.stderr)
    assert "Traceback" not in result.stderr
    assert (tmp_path / "afile").read_text() == "keep me"


def test_a_file_that_is_not_a_results_database_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.sqlite").write_text("not a database")

    result = relutrap("summary", out, cache=tmp_path / "cache")

    assert result.returncode == 2
    assert "not a relutrap results database" in words(result.stderr)
    assert (out / "results.sqlite").read_text() == "not a database"


def test_bad_spec_exits_2_naming_the_field_and_writes_nothing(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(TINY_TOML.replace('name = "adam"', 'name = "adamw"'))
    out = tmp_path / "out"

    result = relutrap("run", spec, "--out", out, cache=tmp_path / "cache")

    assert result.returncode == 2
    assert "parts.0.optimizers.0.name" in words(result.stderr)
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_summary_of_a_missing_directory_fails_clearly(tmp_path):
    missing = tmp_path / "nowhere"

    result = relutrap("summary", missing, cache=tmp_path / "cache")

    assert result.returncode != 0
    assert "nowhere" in words(result.stderr)
    assert "Traceback" not in result.stderr
    assert not missing.exists()


def test_optimizers_lists_every_method_and_convention():
    result = CliRunner().invoke(app, ["optimizers", "--format", "json"])

    assert result.exit_code == 0, result.output
    rows = {(row["name"], row["convention"]): row for row in json.loads(result.stdout)}
    assert ("adadelta", "book") in rows and ("nadamax", "book") in rows
    assert ("amsgrad", "paper") in rows and ("adam", "keras") in rows
    assert not any(rows["adamax", "paper"]["premise_holds"].values())
    assert rows["adam", "book"]["premise_holds"] == {
        "float32": True,
        "float64": True,
        "bfloat16": False,
        "float16": False,
    }
    assert "Theta_n" in rows["momentum", "torch"]["formula"]


def test_summary_warns_where_the_premise_fails(tiny_spec, tmp_path):
    tiny_spec["parts"][0]["steps"] = 5
    tiny_spec["parts"][0]["optimizers"] = [
        {"name": "adam", "learning_rate": 0.01, "convention": "keras"},
        {"name": "adamax", "learning_rate": 0.01, "convention": "paper"},
        {
            "name": "optax:adamw",
            "learning_rate": 0.01,
            "settings": {"weight_decay": 0.01},
        },
    ]
    records = relutrap_api.study(tiny_spec, out=tmp_path, runs=2)

    result = CliRunner().invoke(app, ["summary", str(tmp_path)])

    assert [record["premise_holds"] for record in records] == [True, False, False]
    assert records[0]["convention"] == "keras"
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2
    assert "premise does not hold" in words(result.stderr)


def test_optimizers_as_csv_keeps_bracketed_formulas():
    result = CliRunner().invoke(app, ["optimizers", "--format", "csv"])

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert result.exit_code == 0, result.output
    (adam,) = [
        row for row in rows if (row["method"], row["convention"]) == ("adam", "book")
    ]
    assert "[m_n / (1 - alpha^n)]" in adam["formula"]
    assert adam["float32"] == "True"
