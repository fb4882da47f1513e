"""The HTML report of a study: one self-contained page.

The page holds the spec, the package versions, the per-cell summary table, a
plain-language reading of the headline numbers and every figure, embedded as base64
PNG; it loads nothing from the network.  It is rendered with Jinja2 from the template
shipped in ``relutrap/report/templates`` with autoescaping on, so strings from the
spec (names, descriptions) appear as text and never as markup.

Every number of the summary table carries its exact value in ``data-*`` attributes
(JSON), so scripts can read the page back without parsing formatted text.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from relutrap.analysis import held_fixed
from relutrap.report.figures import DPI, FORMATS, optimizer_label, save, study_figures
from relutrap.report.reading import reading
from relutrap.report.study import Study, load_study

FIGURES = "figures"
REPORT = "report.html"


@dataclass(frozen=True)
class Column:
    """A column of the summary table: its header, the summary field it shows, and
    how (``text``, ``number``, ``integer``, ``proportion`` or ``ratio``)."""

    header: str
    field: str
    kind: str
    title: str = ""


COLUMNS = (
    Column("part", "part", "text"),
    Column("architecture", "architecture", "architecture"),
    Column("optimizer", "optimizer", "optimizer"),
    Column("learning rate", "learning_rate", "number"),
    Column("steps", "steps", "integer"),
    Column("runs", "runs", "integer"),
    Column(
        "P(dead L1)",
        "some_first_layer_inactive",
        "proportion",
        "runs with at least one certified inactive first-layer neuron at init",
    ),
    Column(
        "theory",
        "theory_some_first_layer_inactive",
        "number",
        "1-(1-p)^l1, p the probability that one first-layer neuron is inactive",
    ),
    Column(
        "certified NC",
        "certified_nonconvergent",
        "proportion",
        "runs proven never to converge from their state at initialization",
    ),
    Column(
        "observed NC",
        "observed_nonconvergent",
        "proportion",
        "runs whose final risk is above optimal risk + tolerance, or diverged",
    ),
    Column(
        "collapsed",
        "collapsed",
        "proportion",
        "some hidden layer inactive on the whole domain at initialization",
    ),
    Column(
        "revived",
        "revived",
        "integer",
        "neurons certified inactive at init that were active later",
    ),
    Column(
        "conv. w/o dead",
        "converged_without_certified_inactive",
        "ratio",
        "converged runs among those without any certified inactive neuron",
    ),
    Column(
        "median relative risk",
        "median_relative_risk",
        "number",
        "median of final risk / Var f(X)",
    ),
    Column("tolerance", "tolerance", "number"),
    Column(
        "reference",
        "reference",
        "text",
        "what the observed verdict compares with: the optimal risk, or the best run",
    ),
)


def _attribute(value) -> str:
    return json.dumps(value)


def _architecture(widths: list[int]) -> str:
    hidden = widths[1:-1]
    if len(hidden) > 2 and len(set(hidden)) == 1:
        return f"{widths[0]}-{hidden[0]}(×{len(hidden)})-{widths[-1]}"
    return "-".join(str(width) for width in widths)


def _number(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4):
        return f"{value:.2e}"
    return f"{value:.3g}"


def table_cell(column: Column, record: dict, records: list[dict]) -> dict:
    """The text and ``data-*`` attributes of one cell of the summary table."""
    value = record.get(column.field)
    data = {"field": column.field}
    if column.kind == "proportion":
        entry = value or {}
        for key in ("count", "runs", "fraction", "low", "high"):
            data[key] = _attribute(entry.get(key))
        if entry.get("fraction") is None:
            text = "n/a"
        else:
            text = f"{entry['fraction']:.2f} [{entry['low']:.2f}, {entry['high']:.2f}]"
    elif column.kind == "ratio":
        total = record["without_certified_inactive"]
        data["value"] = _attribute(value)
        data["of"] = _attribute(total)
        text = "n/a" if value is None else f"{value}/{total}"
    elif column.kind == "architecture":
        data["value"] = _attribute(value)
        text = _architecture(value)
    elif column.kind == "optimizer":
        data["value"] = _attribute(value)
        text = optimizer_label(record, records)
        if record.get("premise_holds") is False:
            text += " (premise fails)"
    else:
        data["value"] = _attribute(value)
        if column.kind == "text":
            text = "n/a" if value is None else str(value)
        else:
            text = _number(value)
    return {"text": text, "data": data}


def table_rows(records: list[dict]) -> list[dict]:
    """The summary table: one row per cell."""
    return [
        {
            "cell": record["cell"],
            "cells": [table_cell(column, record, records) for column in COLUMNS],
        }
        for record in records
    ]


def _slope(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _member(fit: dict, records: list[dict]) -> dict:
    """A cell the fit goes through, whose factors label the fit as they label it."""
    return next(
        (record for record in records if held_fixed(record) == fit["held_fixed"]),
        fit["held_fixed"],
    )


def rate_row(fit: dict, records: list[dict]) -> dict:
    """One row of the rates table: a fit of ``log(1 - P)`` along an axis (see
    :func:`relutrap.analysis.rates`), with its exact numbers as ``data-*``."""
    fixed = ", ".join(f"{key} {value}" for key, value in (fit["fixed"] or {}).items())
    interval = (
        f"[{_slope(fit['low'])}, {_slope(fit['high'])}]"
        if fit["slope"] is not None
        else ""
    )
    return {
        "part": fit["part"],
        "optimizer": optimizer_label(_member(fit, records), records),
        "axis": f"{fit['axis']} ({fixed})" if fixed else fit["axis"],
        "event": fit["event"].replace("_", " "),
        "slope": f"{_slope(fit['slope'])} {interval}".strip(),
        "theory": _slope(fit.get("theory_slope")),
        "data": {
            **{
                key: _attribute(fit.get(key))
                for key in ("slope", "low", "high", "theory_slope")
            },
            "held-fixed": _attribute(fit["held_fixed"]),
        },
    }


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("relutrap.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(study: Study, figures: list[dict]) -> str:
    """The page of ``study``; ``figures``: dicts with ``name``, ``title``,
    ``caption``, ``width`` (CSS pixels at most) and ``png`` (base64)."""
    records = study.records
    incomplete = sum(record["runs"] < record["planned_runs"] for record in records)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            name=study.spec.get("name", "experiment"),
            description=study.spec.get("description", ""),
            directory=str(study.directory),
            created=study.created,
            versions=study.versions,
            spec=json.dumps(study.spec, indent=2, sort_keys=True),
            columns=COLUMNS,
            rows=table_rows(records),
            runs=sum(record["runs"] for record in records),
            cells=len(records),
            incomplete=incomplete,
            reading=reading(records),
            rates=[rate_row(fit, records) for fit in study.rates],
            figures=figures,
        )
    )


def write_report(
    directory: str | Path,
    out: str | Path | None = None,
    formats: Iterable[str] = ("png", "svg"),
) -> tuple[Path, list[Path]]:
    """Write the figures of the study in ``directory`` to ``directory/figures`` and
    its page to ``out`` (default ``directory/report.html``).

    Returns:
        the page's path and the figure files written.

    Raises:
        relutrap.store.StoreError: ``directory`` holds no relutrap results.
        ValueError: a format is not one of png, svg, pdf.
    """
    formats = tuple(dict.fromkeys(formats))
    unknown = [format for format in formats if format not in FORMATS]
    if unknown:
        raise ValueError(
            f"unknown figure format(s) {', '.join(unknown)}; choose from "
            + ", ".join(FORMATS)
        )
    study = load_study(directory)
    out = Path(out) if out is not None else study.directory / REPORT

    written, embedded = [], []
    for drawn in study_figures(study):
        paths = save(drawn.figure, study.directory / FIGURES, drawn.name, formats)
        written.extend(paths.values())
        embedded.append(
            {
                "name": drawn.name,
                "title": drawn.title,
                "caption": drawn.caption,
                # one scale for every figure: as many pixels per inch on the page
                "width": round(float(drawn.figure.get_size_inches()[0]) * 80),
                "png": (
                    base64.b64encode(paths["png"].read_bytes()).decode("ascii")
                    if "png" in paths
                    else _png(drawn.figure)
                ),
            }
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(study, embedded), encoding="utf-8")
    return out, written
