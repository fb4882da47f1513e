"""Figures and the HTML report: valid images, a page that renders in a headless
browser without console errors, numbers equal to the JSON summary, escaped spec
strings, and clear errors for directories that hold no study."""

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import relutrap
from relutrap.analysis import HELD_FIXED
from relutrap.cli import app
from relutrap.report.figures import (
    COLLAPSE_BOUND,
    Group,
    _quartiles,
    _risk_range,
    _tolerance_limit,
    census_figure,
    final_risk_figure,
    groups,
    optimizer_label,
    probability_figure,
    save,
    study_figures,
    trajectory_figure,
)
from relutrap.report.reading import percent, reading
from relutrap.report.study import Study

HOSTILE_NAME = 'tiny <script>alert("name")</script> & co'
HOSTILE_DESCRIPTION = "<script>alert('description')</script><b>bold?</b>"

SPEC = {
    "name": HOSTILE_NAME,
    "description": HOSTILE_DESCRIPTION,
    "seed": 5,
    "runs": 6,
    "chunk_size": 6,
    "checkpoints": 5,
    "parts": [
        {
            "name": "width",
            "width": [1, 2],
            "steps": 20,
            "problem": {"evaluation_size": 64},
            "optimizers": [
                {"name": "adam", "learning_rate": 0.01},
                {"name": "sgd", "learning_rate": 0.1},
            ],
        },
        {
            "name": "depth",
            "width": [2],
            "depth": [1, 2],
            "steps": 20,
            "problem": {"evaluation_size": 64, "target": "square"},
            "optimizers": [{"name": "sgd", "learning_rate": 0.1}],
        },
    ],
}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    """A tiny study (two parts, six cells) with its report written by the CLI."""
    out = tmp_path_factory.mktemp("report") / "study"
    relutrap.study(SPEC, out=out)
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def summary_json(study_dir) -> list[dict]:
    result = runner.invoke(app, ["summary", str(study_dir), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["cells"]


@pytest.mark.slow
def test_report_rates_equal_summary_json(study_dir):
    result = runner.invoke(app, ["summary", str(study_dir), "--format", "json"])
    fits = json.loads(result.stdout)["rates"]
    html = (study_dir / "report.html").read_text(encoding="utf-8")
    start = html.index('id="rates-table"')
    rows = []

    class Rows(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attributes = dict(attrs)
            if tag == "tr" and "data-slope" in attributes:
                rows.append(attributes)

    Rows().feed(html[start:])
    assert fits and len(rows) == len(fits)
    for row, fit in zip(rows, fits):
        for key in ("slope", "low", "high", "theory_slope"):
            assert json.loads(row[f"data-{key}"]) == fit[key], key


class PageParser(HTMLParser):
    """Collects the summary table's cells, every resource reference, the title
    text and the text of the page."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, list[dict]] = {}
        self.row: str | None = None
        self.cell: dict | None = None
        self.references: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.in_h1 = False
        self.h1 = ""

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append(tag)
        for name in ("src", "href"):
            if name in attributes:
                self.references.append(attributes[name])
        if tag == "tr" and "data-cell" in attributes:
            self.row = attributes["data-cell"]
            self.rows[self.row] = []
        if tag == "td" and self.row is not None:
            self.cell = {"text": "", **attributes}
        self.in_h1 = self.in_h1 or tag == "h1"

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.rows[self.row].append(self.cell)
            self.cell = None
        if tag == "tr":
            self.row = None
        if tag == "h1":
            self.in_h1 = False

    def handle_data(self, data):
        self.text.append(data)
        if self.cell is not None:
            self.cell["text"] += data
        if self.in_h1:
            self.h1 += data


def parsed_page(study_dir: Path) -> PageParser:
    parser = PageParser()
    parser.feed((study_dir / "report.html").read_text(encoding="utf-8"))
    return parser


@pytest.mark.slow
def test_figures_are_valid_images(study_dir):
    figures = study_dir / "figures"
    expected = {
        f"{part}-{kind}"
        for part in ("width", "depth")
        for kind in ("probability", "final-risk", "census", "trajectories")
    }
    for suffix in ("png", "svg"):
        assert {path.stem for path in figures.glob(f"*.{suffix}")} == expected
    assert not list(figures.glob("*.pdf")), "PDF only on request"
    for path in figures.glob("*.png"):
        assert path.read_bytes().startswith(PNG_SIGNATURE)
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.width > 600 and image.height > 300
            # not a blank canvas: many distinct colours
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50
    for path in figures.glob("*.svg"):
        root = ElementTree.parse(path).getroot()
        assert root.tag.endswith("svg")
        assert len(list(root.iter())) > 100


@pytest.mark.slow
def test_report_numbers_equal_summary_json(study_dir, summary_json):
    rows = parsed_page(study_dir).rows
    assert set(rows) == {record["cell"] for record in summary_json}
    compared = 0
    for record in summary_json:
        for cell in rows[record["cell"]]:
            field = cell["data-field"]
            if "data-fraction" in cell:
                entry = record[field]
                for key in ("count", "runs", "fraction", "low", "high"):
                    assert json.loads(cell[f"data-{key}"]) == entry[key], (field, key)
                    compared += 1
                if entry["fraction"] is None:
                    assert cell["text"] == "n/a"
                else:
                    assert cell["text"] == (
                        f"{entry['fraction']:.2f} "
                        f"[{entry['low']:.2f}, {entry['high']:.2f}]"
                    )
            else:
                assert json.loads(cell["data-value"]) == record[field], field
                compared += 1
            if "data-of" in cell:
                assert (
                    json.loads(cell["data-of"]) == record["without_certified_inactive"]
                )
    assert compared == len(summary_json) * (16 + 4 * 5 - 4)
    # the square target's optimal risk is not known: its observed verdict is n/a
    square = [record for record in summary_json if record["part"] == "depth"]
    assert all(r["observed_nonconvergent"]["fraction"] is None for r in square)


@pytest.mark.slow
def test_spec_strings_are_escaped(study_dir):
    html = (study_dir / "report.html").read_text(encoding="utf-8")
    page = parsed_page(study_dir)
    assert "script" not in page.tags
    assert "<script>" not in html and "<b>bold?</b>" not in html
    assert "&lt;script&gt;" in html
    assert page.h1 == HOSTILE_NAME
    assert HOSTILE_DESCRIPTION in "".join(page.text)


@pytest.mark.slow
def test_report_needs_no_network(study_dir):
    references = parsed_page(study_dir).references
    assert references, "the page embeds its figures"
    assert all(reference.startswith("data:") for reference in references)
    assert sum(ref.startswith("data:image/png;base64,") for ref in references) == 8


@pytest.mark.slow
def test_reading_states_the_numbers(study_dir, summary_json):
    page = "".join(parsed_page(study_dir).text)
    for sentence in reading(summary_json):
        assert " ".join(sentence.split()) in " ".join(page.split())
    width_one = [r for r in summary_json if r["part"] == "width" and r["width"] == 1]
    theory = width_one[0]["theory_some_first_layer_inactive"]
    assert f"1-(1-p)^l1, is {percent(theory)}" in page


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    for path in ("/usr/bin/chromium", "/usr/lib/chromium/chromium"):
        if os.access(path, os.X_OK):
            return path
    return None


@pytest.mark.slow
@pytest.mark.skipif(
    chromium() is None,
    reason="Chromium is not installed (apt-get install chromium; .ci/run does it)",
)
def test_report_renders_in_headless_chromium(study_dir, tmp_path):
    screenshot = tmp_path / "page.png"
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={screenshot}",
            "--window-size=1280,2000",
            (study_dir / "report.html").resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # Chromium logs every console message of the page as a CONSOLE line; the page
    # runs no script, so any such line is an error.
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 10
    assert (pixels < 128).mean() > 0.01


def test_console_lines_are_how_chromium_reports_errors(tmp_path):
    """The check above would see a page's console errors (a control)."""
    if chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>console.error('boom')</script>")
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={tmp_path / 'bad.png'}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert any(
        ":CONSOLE" in line and "boom" in line for line in result.stderr.splitlines()
    )


@pytest.mark.parametrize("make", ["missing", "empty", "not a database"])
def test_bad_directory_is_refused(tmp_path, make):
    directory = tmp_path / "study"
    if make != "missing":
        directory.mkdir()
    if make == "not a database":
        (directory / "results.sqlite").write_text("hello")
    result = runner.invoke(app, ["report", str(directory)])
    assert result.exit_code == 2
    assert "error:" in result.output and str(directory) in result.output
    assert "Traceback" not in result.output
    assert not (directory / "figures").exists()
    assert not (directory / "report.html").exists()


def test_bad_format_is_refused_before_anything_is_written(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path), "--formats", "png,gif"])
    assert result.exit_code == 2
    assert "--formats" in result.output and "gif" in result.output
    assert list(tmp_path.iterdir()) == []


def record(part="w", width=2, depth=1, optimizer="adam", **changes) -> dict:
    """A summary record with the fields the figures read."""
    base = {
        "part": part,
        "cell": f"{part}-{width}-{depth}-{optimizer}",
        "architecture": [1] + [width] * depth + [1],
        "width": width,
        "depth": depth,
        "optimizer": optimizer,
        "convention": "book",
        "schedule": {"kind": "constant"},
        "learning_rate": 0.01,
        "tolerance": 1e-4,
        "target": "teacher",
        "teacher_width": width,
        "data": None,
        "optimal_risk": 0.0,
        "target_variance": 0.04,
    }
    base.update(changes)
    return base


def test_groups_follow_the_varying_axis():
    width = [record("a", w) for w in (1, 2, 4)]
    depth = [record("b", 2, d) for d in (1, 2)]
    grid = [record("c", w, d) for w in (1, 2) for d in (1, 3)]
    found = groups(width + depth + grid)
    assert [(g.name, g.axis, len(g.records)) for g in found] == [
        ("a", "width", 3),
        ("b", "depth", 2),
        ("c-depth1", "width", 2),
        ("c-depth3", "width", 2),
    ]
    assert found[0].values() == [1, 2, 4]


def test_optimizer_labels_tell_series_apart():
    records = [
        record(optimizer="adam", learning_rate=0.01),
        record(optimizer="adam", learning_rate=0.001),
        record(optimizer="sgd", convention="torch", schedule={"kind": "cosine"}),
    ]
    labels = [optimizer_label(r, records) for r in records]
    assert labels == ["Adam, lr 0.01", "Adam, lr 0.001", "SGD (torch), cosine"]
    swept = [record(init=scheme) for scheme in ("normal", "he_normal")]
    assert [optimizer_label(r, swept) for r in swept] == [
        "Adam, normal init",
        "Adam, he_normal init",
    ]


def test_percent_never_rounds_to_certainty():
    assert percent(0.9996) == "99.9%"
    assert percent(0.0004) == "0.1%"
    assert percent(1.0) == "100%" and percent(0.0) == "0%"
    assert percent(0.375) == "38%"


def _vertical_lines(figure) -> list[float]:
    return sorted(
        float(line.get_xdata()[0])
        for axes in figure.axes
        for line in axes.get_lines()
        if len(set(line.get_xdata())) == 1
    )


def test_final_risk_levels_are_drawn_only_when_the_summary_has_them():
    runs = {
        "w-2-1-adam": [
            {"final_risk": risk, "certified_any": dead}
            for risk, dead in [(1e-3, 0), (2e-3, 1), (0.04, 2), (None, 0)]
        ]
    }
    without = record()
    with_levels = record(levels={"risks": [0.04, 0.01, 0.0]})
    plain = final_risk_figure(Group("w", "w", "width", (without,)), runs)
    drawn = final_risk_figure(Group("w", "w", "width", (with_levels,)), runs)
    tolerance = 1e-4 * 0.04
    assert _vertical_lines(plain) == pytest.approx([tolerance])
    # R_2 = 0 has no place on a log axis; R_0 and R_1 are drawn
    assert _vertical_lines(drawn) == pytest.approx([tolerance, 0.01, 0.04])
    assert "1 diverged" in plain.axes[0].get_title()
    # A 1-2-1 network has at most 2 inactive neurons: the legend stops there.
    legend = [text.get_text() for text in plain.legends[0].get_texts()]
    counts = [label for label in legend if label.endswith("certified inactive")]
    assert counts == [f"{k} certified inactive" for k in range(3)]


def test_pdf_on_request(tmp_path):
    runs = {"w-2-1-adam": [{"final_risk": 1e-3, "certified_any": 1}]}
    figure = final_risk_figure(Group("w", "w", "width", (record(),)), runs)
    paths = save(figure, tmp_path / "figures", "w-final-risk", ["pdf", "png"])
    assert paths["pdf"].read_bytes().startswith(b"%PDF")
    assert paths["png"].read_bytes().startswith(PNG_SIGNATURE)


def with_proportions(entry: dict) -> dict:
    share = {"count": 3, "runs": 4, "fraction": 0.75, "low": 0.19, "high": 0.99}
    unknown = {key: None for key in share} | {"runs": 4}
    return entry | {
        "certified_nonconvergent": share,
        "observed_nonconvergent": unknown,
        "collapsed": share,
        "p_first_layer_neuron": 0.375,
        "p_method": "exact",
    }


def test_theory_curve_only_for_shallow_cells():
    shallow = [with_proportions(record("a", w)) for w in (1, 2, 4)]
    deep = [with_proportions(record("b", w, 2)) for w in (1, 2, 4)]
    labels = []
    for cells in (shallow, deep):
        figure = probability_figure(groups(cells)[0])
        labels.append(
            [
                line.get_label()
                for axes in figure.axes
                for line in axes.get_lines()
                if line.get_label().startswith("theory")
            ]
        )
    # certified, observed and 1 - P panels carry the curve for shallow cells only
    assert len(labels[0]) == 3 and all("p = 0.375" in label for label in labels[0])
    assert labels[1] == []
    # an unknown observed verdict leaves its panel with a note, not a failure
    texts = [text.get_text() for text in figure.axes[1].texts]
    assert any("not known" in text for text in texts)


def test_rate_fits_are_drawn_where_given():
    cells = [with_proportions(record("a", w)) for w in (1, 2, 4)]
    fit = {
        "part": "a",
        "optimizer": "adam",
        "convention": "book",
        "learning_rate": 0.01,
        "axis": "width",
        "fixed": {"depth": 1},
        "event": "certified_nonconvergent",
        "slope": -0.47,
        "intercept": 0.0,
    }
    other = fit | {"optimizer": "sgd"}
    figure = probability_figure(groups(cells)[0], [other, fit])
    fitted = [
        line
        for line in figure.axes[-1].get_lines()
        if line.get_label().startswith("fit")
    ]
    assert [line.get_label() for line in fitted] == ["fit, slope -0.470"]
    x, y = fitted[0].get_data()
    assert np.allclose(y, np.exp(-0.47 * x))
    plain = probability_figure(groups(cells)[0])
    assert not any(
        line.get_label().startswith("fit") for line in plain.axes[-1].get_lines()
    )


def test_quartiles_keep_diverged_runs_infinite():
    low, median, high = _quartiles([[1.0, None], [2.0, None], [3.0, 0.5], [4.0, 1.0]])
    assert list(low) == [1.0, 0.5] and list(median) == [2.0, 1.0]
    assert list(high) == [3.0, np.inf]


def test_group_names_are_unique_within_a_study():
    # "a b" and "a_b" make the same file name; "A_B" would on a case-insensitive
    # file system; "a_b-2" is what the second would become
    cells = [record(part, 2) for part in ("a b", "a_b", "A_B", "a_b-2")]
    # grids of width and depth: one group per depth
    cells += [record("c d", w, d) for w in (1, 2) for d in (1, 2)]
    cells += [record("c_d", w, d) for w in (1, 2) for d in (1, 2)]
    names = [group.name for group in groups(cells)]
    # deterministic by part order: the first part keeps the plain name
    assert names == [
        "a_b",
        "a_b-2",
        "A_B-3",
        "a_b-2-2",
        "c_d-depth1",
        "c_d-depth2",
        "c_d-2-depth1",
        "c_d-2-depth2",
    ]
    assert len({name.lower() for name in names}) == len(names)


def full_record(part="w", width=2, depth=1, optimizer="adam", **changes) -> dict:
    """A summary record with every field the figures of a study read."""
    return with_proportions(record(part, width, depth, optimizer)) | {
        "steps": 20,
        "init": "normal",
        "revived": 0,
        "some_certified_inactive": {
            "count": 2,
            "runs": 4,
            "fraction": 0.5,
            "low": 0.07,
            "high": 0.93,
        },
        "theory_some_first_layer_inactive": 1 - 0.625**width,
        "theory_some_certified_inactive": 1 - 0.625**width * 0.8 ** (depth - 1),
        "theory_certified_collapse": 0.375**width + 0.02 * (depth - 1),
        **changes,
    }


def fake_study(records: list[dict], steps=(0, 1, 5, 20)) -> Study:
    """A study of ``records`` with four runs per cell, without a store."""
    runs, checkpoints = {}, {}
    for entry in records:
        hidden = entry["architecture"][1:-1]
        runs[entry["cell"]] = [
            {
                "final_risk": 10.0 ** -(index + 1),
                "certified_any": index % 3,
                "census": {
                    field: [index % 2] * len(hidden)
                    for field in (
                        "certified_init",
                        "certified_end",
                        "observed_init",
                        "observed_end",
                    )
                },
                "checkpoint_risk": [0.5 / (1 + step + index) for step in steps],
            }
            for index in range(4)
        ]
        checkpoints[entry["cell"]] = list(steps)
    return Study(Path("."), {}, {}, "", records, runs, checkpoints)


def test_study_figure_names_are_unique(tmp_path):
    study = fake_study([full_record("a b"), full_record("a_b")])
    names = [drawn.name for drawn in study_figures(study)]
    assert len(set(names)) == len(names) == 8
    assert "a_b-probability" in names and "a_b-2-probability" in names


LONG_OPTIMIZERS = (
    {"optimizer": "sgd"},
    {"optimizer": "momentum"},
    {"optimizer": "adam", "convention": "torch"},
    {"optimizer": "adam", "schedule": {"kind": "cosine"}},
    {"optimizer": "optax:adamw", "convention": None},
)


def _clipped(figure) -> bool:
    """Whether anything drawn (titles, legends, labels) reaches beyond the edges
    of ``figure``: its tight bounding box, what ``bbox_inches="tight"`` would save,
    is then larger than the figure."""
    figure.draw_without_rendering()
    tight = figure.get_tightbbox()
    width, height = figure.get_size_inches()
    slack = 0.02
    return (
        tight.x0 < -slack
        or tight.y0 < -slack
        or tight.x1 > width + slack
        or tight.y1 > height + slack
    )


def test_one_width_figures_clip_nothing():
    cells = [
        full_record("optimizers", 4, optimizer=entry["optimizer"])
        | {k: v for k, v in entry.items() if k != "optimizer"}
        | {"cell": f"cell{index}"}
        for index, entry in enumerate(LONG_OPTIMIZERS)
    ]
    study = fake_study(cells)
    group = groups(cells)[0]
    figures = {
        "probability": probability_figure(group),
        "final-risk": final_risk_figure(group, study.runs),
        "census": census_figure(group, study.runs),
        "trajectories": trajectory_figure(group, study),
    }
    for name, figure in figures.items():
        assert not _clipped(figure), name
    # a theory line through one width is a visible tick, not a zero-length line
    theory = [
        line
        for axes in figures["probability"].axes
        for line in axes.get_lines()
        if line.get_label().startswith("theory")
    ]
    assert theory and all(line.get_marker() == "_" for line in theory)
    (at_init,) = [
        line
        for line in figures["census"].axes[1].get_lines()
        if line.get_label() == "at init (all optimizers)"
    ]
    assert at_init.get_marker() == "_"


def test_tolerance_is_inside_the_final_risk_range():
    # the depth study's case: tolerance 1e-4 times Var f = 0.062, runs above 3e-5
    cell = record(target_variance=0.062)
    limit = _tolerance_limit(cell)
    group = Group("w", "w", "width", (cell,))
    low, high = _risk_range(group, [[[3e-5, 1e-3, 0.06]]])
    assert low < limit < high
    runs = {
        cell["cell"]: [
            {"final_risk": risk, "certified_any": 0} for risk in (3e-5, 1e-3, 0.06)
        ]
    }
    panel = final_risk_figure(group, runs).axes[0]
    left, right = panel.get_xlim()
    assert left < limit < right


def test_runs_axes_have_integer_ticks():
    runs = {
        "w-2-1-adam": [
            {"final_risk": risk, "certified_any": 0} for risk in (1e-3, 1e-2, 0.1)
        ]
    }
    figure = final_risk_figure(Group("w", "w", "width", (record(),)), runs)
    figure.draw_without_rendering()
    ticks = figure.axes[0].get_yticks()
    assert len(ticks) >= 2 and np.all(ticks == np.round(ticks))


def _theory_lines(axes) -> list:
    return [line for line in axes.get_lines() if line.get_label().startswith("theory")]


def test_distinct_theories_have_distinct_styles():
    schemes = {"normal": 0.375, "he_normal": 0.5}
    cells = [
        full_record(
            "sweep",
            w,
            cell=f"{scheme}{w}",
            init=scheme,
            initialization={"scheme": scheme},
            p_first_layer_neuron=p,
        )
        for scheme, p in schemes.items()
        for w in (1, 2, 4)
    ]
    # the fits of both schemes agree in every field but the initialization
    fits = [
        {
            "part": "sweep",
            "optimizer": "adam",
            "convention": "book",
            "learning_rate": 0.01,
            "axis": "width",
            "fixed": {"depth": 1},
            "held_fixed": {name: cell.get(name) for name in HELD_FIXED},
            "event": "certified_nonconvergent",
            "slope": slope,
            "intercept": 0.0,
        }
        for cell, slope in ((cells[0], -0.47), (cells[3], -0.69))
    ]
    figure = probability_figure(groups(cells)[0], fits)
    certified = _theory_lines(figure.axes[0])
    assert [line.get_label() for line in certified] == [
        "theory $1-(1-p)^{l_1}$, p = 0.375 (normal init)",
        "theory $1-(1-p)^{l_1}$, p = 0.5 (he_normal init)",
    ]
    styles = {(line.get_linestyle(), line.get_color()) for line in certified}
    assert len(styles) == 2
    # each initialization's series gets its own fit
    fitted = [
        line.get_label()
        for line in figure.axes[-1].get_lines()
        if line.get_label().startswith("fit")
    ]
    assert fitted == ["fit, slope -0.470", "fit, slope -0.690"]


def test_theory_of_a_dead_first_layer_neuron_only_where_it_bounds_the_verdict():
    unknown = {key: None for key in ("count", "fraction", "low", "high")}
    cells = [
        full_record(
            "sine",
            w,
            target="sin",
            optimal_risk=None,
            observed_nonconvergent=unknown | {"runs": 4},
        )
        for w in (1, 2, 4)
    ]
    figure = probability_figure(groups(cells)[0])
    certified, observed, complement = figure.axes[:3]
    labels = [
        line.get_label()
        for axes in figure.axes
        for line in axes.get_lines()
        if "p)" in line.get_label()
    ]
    assert labels == [], "1-(1-p)^l1 bounds no verdict of a sine target"
    assert [line.get_label() for line in _theory_lines(certified)] == [COLLAPSE_BOUND]
    x, y = _theory_lines(certified)[0].get_data()
    assert list(x) == [1, 2, 4] and np.allclose(y, [0.375**w for w in (1, 2, 4)])
    assert _theory_lines(observed) == []
    assert np.allclose(
        _theory_lines(complement)[0].get_ydata(), [1 - 0.375**w for w in (1, 2, 4)]
    )
    study = fake_study(cells)
    (caption,) = [d.caption for d in study_figures(study) if "probability" in d.name]
    assert "collapses only" in caption and "left out" in caption
    teacher = fake_study([full_record("t", w) for w in (1, 2)])
    (caption,) = [d.caption for d in study_figures(teacher) if "probability" in d.name]
    assert "1-(1-p)^l1" in caption and "left out" not in caption
    # A teacher narrower than the student leaves room for dead neurons.
    narrow = fake_study([full_record("n", w, teacher_width=1) for w in (2, 4)])
    (caption,) = [d.caption for d in study_figures(narrow) if "probability" in d.name]
    assert "left out" in caption


def test_depth_log_panels_carry_theory_and_fits():
    cells = [full_record("depth", 2, d, cell=f"d{d}") for d in (1, 2, 4)]
    fits = [
        {
            "part": "depth",
            "optimizer": "adam",
            "convention": "book",
            "learning_rate": 0.01,
            "axis": "depth",
            "fixed": {"width": 2},
            "event": event,
            "slope": slope,
            "intercept": 0.1,
            "theory_slope": theory,
        }
        for event, slope, theory in (
            ("some_certified_inactive", -0.53, -0.267),
            ("collapsed", -0.46, -0.016),
        )
    ]
    group = groups(cells)[0]
    assert group.axis == "depth"
    figure = probability_figure(group, fits)
    titles = {axes.get_title().split(":")[0]: axes for axes in figure.axes}
    for title, field, slope, theory in (
        (
            "Some neuron certified inactive",
            "theory_some_certified_inactive",
            -0.53,
            -0.267,
        ),
        ("Collapsed", "theory_certified_collapse", -0.46, -0.016),
    ):
        panel = titles[title]
        assert panel.get_yscale() == "log"
        (line,) = _theory_lines(panel)
        assert f"{theory:.3f}" in line.get_label()
        assert np.allclose(line.get_ydata(), [1 - cell[field] for cell in cells])
        (fit,) = [f for f in panel.get_lines() if f.get_label().startswith("fit")]
        x, y = fit.get_data()
        assert np.allclose(y, np.exp(0.1 + slope * x))
    legend = [text.get_text() for text in figure.axes[-1].get_legend().get_texts()]
    assert any("slope of log(1 − P): -0.267" in text for text in legend)


def test_untrained_part_has_a_sensible_step_axis():
    cells = [full_record("zero", w, steps=0, cell=f"z{w}") for w in (1, 2)]
    study = fake_study(cells, steps=(0,))
    figure = trajectory_figure(groups(cells)[0], study)
    for panel in figure.axes[:2]:
        assert panel.get_xscale() == "linear"
        left, right = panel.get_xlim()
        assert left <= -0.5 and right >= 0.5
        assert list(panel.get_xticks()) == [0]
        # the risk at step 0 is drawn: a median with bars to the quartiles
        assert any(len(line.get_xdata()) == 1 for line in panel.get_lines())
    (caption,) = [d.caption for d in study_figures(study) if "trajector" in d.name]
    assert "steps = 0" in caption
