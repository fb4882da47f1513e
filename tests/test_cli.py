import csv
import io
import json
import math

import pytest
import typer
from typer.testing import CliRunner

import relutrap as relutrap_api
from command import relutrap, run_study
from relutrap.cli import app

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


def words(text: str) -> str:
    """The text with every run of white space made one space (undoes wrapping)."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny study run through the command line: (its directory, the run's result)."""
    return run_study(tmp_path_factory.mktemp("cli"), TINY_TOML)


@pytest.mark.slow
def test_run_succeeds(study):
    out, result = study

    assert result.returncode == 0, result.stderr
    assert (out / "results.sqlite").is_file()


@pytest.mark.slow
def test_summary_as_json_has_one_record_per_cell(study, tmp_path):
    out, _ = study

    result = relutrap("summary", out, "--format", "json", cache=tmp_path)
    summary = json.loads(result.stdout)
    records = summary["cells"]

    assert result.returncode == 0, result.stderr
    # Widths 1 and 2 of part w: one rate fit per event along the width.
    fitted = {fit["event"] for fit in summary["rates"] if fit["part"] == "w"}
    assert "some_first_layer_inactive" in fitted
    assert all(fit["axis"] == "width" for fit in summary["rates"])
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
    spec = out.parent / "spec.toml"
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


def _bound(*arguments):
    return CliRunner().invoke(app, ["bound", *map(str, arguments)])


def test_bound_as_json_gives_the_exact_shallow_numbers():
    result = _bound(
        "--arch", "1,8,1", "--init", "normal", "--domain", "0,1", "--format", "json"
    )
    record = json.loads(result.stdout)

    assert result.exit_code == 0, result.output
    (layer,) = record["layers"]
    assert layer["neuron"] == {"value": 0.375, "method": "exact", "standard_error": 0.0}
    assert layer["some"]["value"] == pytest.approx(1 - (5 / 8) ** 8)
    assert record["some_neuron"]["value"] == pytest.approx(1 - (5 / 8) ** 8)
    assert record["collapse"]["value"] == pytest.approx((3 / 8) ** 8)
    assert record["note"] is None


def test_bound_as_a_table_names_every_layer_and_the_network():
    result = _bound("--arch", "2,4,3,1", "--init", "torch_default", "--domain", "-1,1")

    assert result.exit_code == 0, result.output
    text = words(result.stdout)
    assert "support function" in text and "sign" in text
    assert "some neuron" in text and "collapse" in text
    assert "0.0833333" in text  # p = 1/12 for PyTorch's default init on [-1, 1]^2


def test_bound_on_other_domains():
    ball = _bound(
        "--arch", "2,4,1", "--shape", "ball", "--center", "0", "--format", "json"
    )
    gaussian = _bound("--arch", "1,4,4,1", "--shape", "gaussian", "--format", "json")

    assert ball.exit_code == 0 and gaussian.exit_code == 0, ball.output
    assert json.loads(ball.stdout)["layers"][0]["neuron"]["method"] == "quadrature"
    record = json.loads(gaussian.stdout)
    assert record["layers"][0]["neuron"]["value"] == 0.0
    assert "unbounded support" in record["note"]
    assert record["layers"][1]["neuron"]["value"] == 0.5**5


def test_bound_on_a_file_of_points(tmp_path):
    points = tmp_path / "points.csv"
    points.write_text("x,label\n0.2,a\n0.9,b\n0.5,c\n")

    on_points = json.loads(
        _bound("--arch", "1,3,1", "--points", points, "--format", "json").stdout
    )
    on_hull = json.loads(
        _bound("--arch", "1,3,1", "--domain", "0.2,0.9", "--format", "json").stdout
    )

    assert on_points["layers"][0]["neuron"]["value"] == pytest.approx(
        on_hull["layers"][0]["neuron"]["value"]
    )


def test_bound_standardizes_points_as_a_study_does(tmp_path):
    from relutrap import datasets
    from relutrap.init import Initialization

    points = tmp_path / "houses.csv"
    points.write_text("area,age,price\n1,10,3\n2,30,5\n4,20,4\n8,50,9\n")
    source = datasets.DataSource(
        path=str(points), inputs=("area", "age"), target="price", holdout=0.0
    )
    study = datasets.first_layer_inactivity(Initialization(), (2, 4, 1), source)

    result = _bound(
        "--arch", "2,4,1", "--points", points, "--target", "price",
        "--standardize", "--format", "json",
    )  # fmt: skip
    raw = _bound("--arch", "2,4,1", "--points", points, "--target", "price")

    assert result.exit_code == 0, result.output
    p = json.loads(result.stdout)["layers"][0]["neuron"]
    assert p["value"] == pytest.approx(study.value, abs=6 * p["standard_error"])
    assert f"{p['value']:.4g}" not in raw.stdout


def test_bound_reads_the_points_named_by_inputs_and_refuses_a_bad_file(tmp_path):
    points = tmp_path / "points.csv"
    points.write_text("x,y,z\n0.2,5,1\n0.9,6,2\n")
    twice = tmp_path / "twice.csv"
    twice.write_text("x,x\n1,2\n")
    header_only = tmp_path / "header.csv"
    header_only.write_text("x\n")

    chosen = _bound("--arch", "2,3,1", "--points", points, "--inputs", "x,z")
    too_many = _bound("--arch", "2,3,1", "--points", points)
    duplicate = _bound("--arch", "1,3,1", "--points", twice)
    empty = _bound("--arch", "1,3,1", "--points", header_only)

    assert chosen.exit_code == 0, chosen.output
    assert too_many.exit_code == 2
    assert "dimension 3 (columns x, y, z)" in words(too_many.output)
    assert duplicate.exit_code == 2
    assert "line 1, column 'x': duplicate column name" in words(duplicate.output)
    assert empty.exit_code == 2
    assert "no data rows" in words(empty.output)


@pytest.mark.parametrize(
    "arguments, option",
    [
        (["--arch", "1,8"], "--arch"),
        (["--arch", "1,x,1"], "--arch"),
        (["--arch", "1,8,1", "--init", "nope"], "--init"),
        (["--arch", "1,8,1", "--bias", "nope"], "--bias"),
        (["--arch", "1,8,1", "--domain", "1,0"], "--domain"),
        (["--arch", "1,8,1", "--scale", "-1"], "--scale"),
        (["--arch", "2,8,1", "--shape", "ball", "--center", "0,0,0"], "--center"),
        (["--arch", "1,8,1", "--shape", "ball", "--radius", "0"], "--radius"),
        (["--arch", "1,8,1", "--shape", "ball", "--domain", "0,1"], "--domain"),
        (["--arch", "1,8,1", "--shape", "cube"], "--shape"),
        (["--arch", "1,8,1", "--points", "/nonexistent.csv"], "--points"),
        (["--arch", "1,8,1", "--radius", "2"], "--radius"),
        (["--arch", "1,8,1", "--center", "0"], "--center"),
        (["--arch", "1,8,1", "--inputs", "x"], "--inputs"),
        (["--arch", "1,8,1", "--format", "csv"], "--format"),
    ],
)
def test_bound_refuses_bad_arguments_naming_the_option(arguments, option):
    result = _bound(*arguments)

    assert result.exit_code == 2
    assert option in words(result.output)


def strict_json(text: str):
    """``text`` read as strict JSON: the tokens NaN and Infinity are refused."""

    def refuse(token):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_bound_under_the_asymmetric_scheme_certifies_no_deeper_neuron():
    result = _bound("--arch", "1,4,4,1", "--init", "asymmetric", "--format", "json")
    record = strict_json(result.stdout)
    table = _bound("--arch", "1,4,4,1", "--init", "asymmetric")

    assert result.exit_code == 0, result.output
    first, second = record["layers"]
    assert first["neuron"]["method"] == "exact"
    assert first["neuron"]["value"] == pytest.approx(0.148173, abs=1e-6)
    assert second["neuron"] == {"value": 0.0, "method": "exact", "standard_error": 0.0}
    assert record["some_neuron"]["value"] == pytest.approx(first["some"]["value"])
    assert "sign test" in record["note"]
    assert table.exit_code == 0 and "0.148173" in table.stdout


@pytest.mark.parametrize(
    "arguments",
    [
        ["--arch", "1,2,1", "--domain", "0,1e155"],
        ["--arch", "1,2,1", "--domain", "1e300,1e301"],
        ["--arch", "2,2,1", "--domain", "-1e200,1e200"],
        ["--arch", "1,2,1", "--shape", "ball", "--radius", "1e308"],
        ["--arch", "3,2,1", "--shape", "ball", "--center", "1e308", "--radius", "1"],
        ["--arch", "1,2,1", "--init", "asymmetric", "--domain", "1e300,1e301"],
        ["--arch", "5,2,1", "--init", "uniform", "--domain", "1e308,1.7e308"],
    ],
)
def test_bound_on_huge_domains_prints_probabilities(arguments):
    result = _bound(*arguments, "--format", "json")
    record = strict_json(result.stdout)

    assert result.exit_code == 0, result.output
    values = [record["some_neuron"]["value"], record["collapse"]["value"]]
    for layer in record["layers"]:
        values += [layer[key]["value"] for key in ("neuron", "some", "every")]
    assert all(0 <= value <= 1 for value in values)


def test_json_output_writes_numbers_that_are_not_finite_as_null(capsys):
    from relutrap.cli import _print_json

    _print_json({"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -math.inf}})

    assert strict_json(capsys.readouterr().out) == {
        "a": None,
        "b": [None, 1.5],
        "c": {"d": None},
    }


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--shape", "ball", "--center", "nan"], "--center: must be finite"),
        (["--shape", "gaussian", "--center", "0,inf"], "--center: must be finite"),
        (["--domain", "0,inf"], "--domain: must be finite"),
        (
            ["--init", "asymmetric", "--bias", "zero"],
            "--bias: does not apply to --init asymmetric",
        ),
        (
            ["--init", "asymmetric", "--scale", "2"],
            "--scale: does not apply to --init asymmetric",
        ),
        (
            ["--init", "asymmetric", "--bias-value", "0"],
            "--bias-value: does not apply to --init asymmetric",
        ),
        (["--bias-value", "0.5"], "--bias-value: does not apply to --bias default"),
        (
            ["--bias", "zero", "--bias-value", "0.5"],
            "--bias-value: does not apply to --bias zero",
        ),
        (["--scale", "2"], "--scale: does not apply to --init normal"),
        (
            ["--init", "he_uniform", "--scale", "2"],
            "--scale: does not apply to --init he_uniform",
        ),
        (["--init", "uniform", "--scale", "nan"], "--scale: must be a positive"),
    ],
)
def test_bound_refuses_options_that_do_not_apply_or_are_not_finite(arguments, message):
    result = _bound("--arch", "2,3,1", *arguments)

    assert result.exit_code == 2, result.output
    assert message in words(result.output)


@pytest.mark.parametrize(
    "arch, message",
    [
        ("100000,4,1", "the input dimension is at most 64"),
        ("65,4,1", "the input dimension is at most 64"),
        ("0,4,1", "the input dimension must be at least 1"),
        ("1,99999999999999999999,1", "a hidden width is at most 100000"),
        ("1,4,100001,1", "a hidden width is at most 100000"),
        ("1,0,1", "every hidden width must be at least 1"),
        ("1," + "2," * 65 + "1", "at most 64 hidden layers"),
        ("1,4,2", "give d,l1,...,lL,1 with output width 1"),
    ],
)
def test_bound_keeps_the_architecture_within_a_study_s_limits(arch, message):
    result = _bound("--arch", arch)

    assert result.exit_code == 2, result.output
    assert f"--arch: {message}" in words(result.output)


def test_bound_accepts_the_options_that_apply():
    uniform = _bound("--arch", "1,2,1", "--init", "uniform", "--scale", "2")
    constant = _bound(
        "--arch",
        "1,2,1",
        "--bias",
        "constant",
        "--bias-value",
        "-0.5",
        "--format",
        "json",
    )
    widest = _bound("--arch", "64,100000,1", "--init", "he_normal")

    assert uniform.exit_code == 0, uniform.output
    assert constant.exit_code == 0, constant.output
    layer = strict_json(constant.stdout)["layers"][0]
    assert layer["neuron"]["value"] == pytest.approx(0.691462, abs=1e-6)  # Phi(1/2)
    assert widest.exit_code == 0, widest.output


def test_every_help_shows_its_text_whole():
    command = typer.main.get_command(app)
    shown = {}
    for name, subcommand in command.commands.items():
        result = CliRunner().invoke(app, [name, "--help"], terminal_width=120)
        assert result.exit_code == 0, result.output
        shown[name] = words(result.output)
        texts = [subcommand.help or ""]
        texts += [param.help for param in subcommand.params if param.help]
        for text in texts:
            assert words(text) in shown[name], (name, text)
    assert "Box [a, b]^d as a,b." in shown["bound"]
    assert "The box [low, high]^d as low,high" in shown["levels"]
