"""The example specs: each parses, says in one line which question it answers, and
the real-data example runs end to end through the command line."""

import json
from pathlib import Path

import pytest

from command import relutrap
from relutrap.experiment import DEFAULT_SPEC, cells, load_spec

EXAMPLES = Path(__file__).parent.parent / "examples"
SPECS = sorted(EXAMPLES.glob("*.toml"))


def test_the_examples_are_there():
    names = {path.stem for path in SPECS}
    assert {"default", "depth", "optimizers", "diabetes"} <= names


@pytest.mark.parametrize("path", SPECS, ids=lambda path: path.stem)
def test_example_parses_and_states_its_question(path):
    spec = load_spec(path)
    first_line = path.read_text().splitlines()[0]

    assert cells(spec)
    assert first_line == f"# {spec.description}"
    assert "\n" not in spec.description and spec.description.endswith("?")


def test_default_example_is_the_built_in_default_study():
    assert (EXAMPLES / "default.toml").read_text() == DEFAULT_SPEC.read_text()


@pytest.mark.slow
def test_diabetes_study_runs_end_to_end(tmp_path):
    out = tmp_path / "out"
    # A small version of the example: two runs of depth 2, three epochs.
    spec = tmp_path / "diabetes.toml"
    text = (EXAMPLES / "diabetes.toml").read_text()
    text = text.replace("depth = [1, 2, 4, 8]", "depth = [2]")
    spec.write_text(text.replace("epochs = 40", "epochs = 3"))

    ran = relutrap("run", spec, "--runs", "2", "--out", out, cache=tmp_path / "c")
    summary = relutrap("summary", out, "--format", "json", cache=tmp_path / "c")

    assert ran.returncode == 0, ran.stderr
    assert summary.returncode == 0, summary.stderr
    records = json.loads(summary.stdout)["cells"]
    assert [record["architecture"] for record in records] == [[10, 4, 4, 1]]
    for record in records:
        assert record["data"] == "diabetes"
        assert record["reference"] == "best run"
        assert record["optimal_risk"] is None
        assert record["runs"] == 2
        assert record["steps"] == 3 * (354 // 32)
        assert record["observed_nonconvergent"]["count"] <= 1  # the best run converged
        assert record["best_final_risk"] <= record["median_final_risk"]
        assert record["median_holdout_risk"] > 0
        assert record["risk_method"].startswith("empirical risk on the 354 training")
        assert record["revived"] == 0
    table = relutrap("summary", out, cache=tmp_path / "c")
    assert "vs best" in table.stdout


def test_bad_data_file_exits_2_and_writes_nothing(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b,y\n1,2,3\n4,5\n")
    spec = tmp_path / "bad.toml"
    spec.write_text(
        'name = "bad"\n[[parts]]\nname = "p"\nwidth = [2]\nbatch_size = 1\n'
        'problem = { data = { path = "bad.csv", target = "y" } }\n'
        '[[parts.optimizers]]\nname = "sgd"\nlearning_rate = 0.1\n'
    )
    out = tmp_path / "out"

    result = relutrap("run", spec, "--out", out, cache=tmp_path / "c", cwd="/")

    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert f"{tmp_path / 'bad.csv'}, line 3, column 'y': missing" in message
    assert not out.exists()
