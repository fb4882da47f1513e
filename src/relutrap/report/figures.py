"""Figures of a study, drawn with matplotlib from its summary records and runs.

A study's cells are split into *groups*: the cells of one part that share every
architecture coordinate but one, the *axis* (the width ``l1`` of the first hidden
layer, or the depth ``L``).  Each group gets

* ``probability``: certified and observed non-convergence against the axis, with 95%
  Clopper-Pearson intervals and the theory beside the quantity it bounds: against
  width ``1 - (1 - p)^l1`` where a dead first-layer neuron certifies non-convergence
  (a shallow student of a realizable teacher), else the lower bound on certified
  collapse; against depth the collapse probability with its bound; and ``1 - P`` on
  a log scale with the theory and the summary's fitted rates (against depth, of
  "some neuron certified inactive" and of "collapsed");
* ``final-risk``: histograms of the final risk per axis value, runs stacked by their
  number of certified inactive neurons at initialization, with the risk levels
  ``R_k`` where the summary has them;
* ``census``: the mean fraction of hidden neurons inactive at initialization and at
  the end of training, certified and observed;
* ``trajectories``: the risk at the checkpoints, median and quartiles per optimizer.

Every figure function is pure: it returns a :class:`matplotlib.figure.Figure`, made
without pyplot (so no global figure registry and no display), and leaves saving to
:func:`save`.  A figure is laid out to hold its legend and title: the legend takes
fewer columns (and the figure more height) where it would be wider than the figure,
and a long title is wrapped, so the saved file is the figure as sized, with nothing
clipped.  Colours come from matplotlib's colour-blind-safe
``tableau-colorblind10`` cycle, each optimizer also gets its own marker and line
style, and ordered counts use the sequential ``viridis`` map, which stays ordered in
grey print.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.style
import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from relutrap.analysis import held_fixed
from relutrap.report.study import Study

FORMATS = ("png", "svg", "pdf")
DPI = 150

COLOURS = matplotlib.style.library["tableau-colorblind10"]["axes.prop_cycle"].by_key()[
    "color"
]
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "h", "<", ">", "p")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
THEORY_COLOUR = "black"
# Distinct theory curves of one figure (one per distinct p): line style and grey.
THEORY_STYLES = (
    ("-", "black"),
    ("--", "0.45"),
    (":", "black"),
    ("-.", "0.45"),
    ((0, (6, 2, 1, 2, 1, 2)), "black"),
)
# Figures narrower than this hold a single panel too cramped for its legend.
MIN_FIGURE_WIDTH = 6.4

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",
}

OPTIMIZER_NAMES = {
    "sgd": "SGD",
    "momentum": "momentum",
    "nesterov": "Nesterov",
    "adagrad": "Adagrad",
    "rmsprop": "RMSprop",
    "adadelta": "Adadelta",
    "adam": "Adam",
    "adamax": "Adamax",
    "amsgrad": "AMSGrad",
    "nadam": "Nadam",
    "nadamax": "Nadamax",
}

AXIS_LABELS = {
    "width": "width $l_1$ of the first hidden layer",
    "depth": "depth $L$ (number of hidden layers)",
}
AXIS_SYMBOLS = {"width": "$l_1$", "depth": "$L$"}

# Runs are coloured by their certified inactive neurons: 0, 1, ..., and "at least".
CENSUS_CLASSES = 5


@dataclass(frozen=True)
class Group:
    """Cells of one part along one axis.

    Attributes:
        name: a file-name-safe name, e.g. ``width`` or ``grid-depth2``.
        title: the part and what is held fixed, for titles.
        axis: ``width`` or ``depth``.
        records: the cells' summary records, in grid order.
    """

    name: str
    title: str
    axis: str
    records: tuple[dict, ...]

    def values(self) -> list[int]:
        """The axis values of the group, ascending."""
        return sorted({record[self.axis] for record in self.records})


@dataclass(frozen=True)
class Drawn:
    """One figure of a study, with what the report says about it."""

    name: str
    title: str
    caption: str
    figure: Figure


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "part"


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``, ... the first not in ``taken`` (compared
    without case, as on case-insensitive file systems); the result is taken."""
    candidate, number = name, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{name}-{number}"
    taken.add(candidate.lower())
    return candidate


def groups(records: Iterable[dict]) -> list[Group]:
    """Split summary records into groups along width or depth.

    A part whose cells vary in depth but not in width is a depth group; otherwise
    its cells are grouped by depth, each group along the width.  Group names are
    unique within the records: parts whose names make the same file-name-safe name
    (``a b`` and ``a_b``) get ``-2``, ``-3``, ... in the order the parts come.
    """
    by_part: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_part[record["part"]].append(record)
    found, slugs, names = [], set(), set()
    for part, cells in by_part.items():
        slug = _unique(_safe(part), slugs)
        widths = {record["width"] for record in cells}
        depths = {record["depth"] for record in cells}
        if len(depths) > 1 and len(widths) == 1:
            found.append(Group(_unique(slug, names), part, "depth", tuple(cells)))
            continue
        for depth in sorted(depths):
            members = tuple(record for record in cells if record["depth"] == depth)
            if len(depths) == 1:
                found.append(Group(_unique(slug, names), part, "width", members))
            else:
                found.append(
                    Group(
                        _unique(f"{slug}-depth{depth}", names),
                        f"{part}, depth {depth}",
                        "width",
                        members,
                    )
                )
    return found


# Cell fields a sweep may vary besides the optimizer: (field, how a label shows it).
SWEPT = (
    ("init", "{} init"),
    ("batch_size", "batch {}"),
    ("steps", "{} steps"),
)


def optimizer_label(record: dict, records: Iterable[dict] = ()) -> str:
    """The optimizer of a cell as a legend shows it: its name, its convention where
    not the book's, its schedule where not constant, its learning rate where
    ``records`` hold the same name with another rate, and its initialization,
    batch size and steps where ``records`` hold several."""
    records = list(records)
    name = record["optimizer"]
    label = OPTIMIZER_NAMES.get(name, name)
    if record.get("convention") not in ("book", None):
        label += f" ({record['convention']})"
    schedule = record.get("schedule") or {}
    if schedule.get("kind", "constant") != "constant":
        label += f", {schedule['kind']}"
    rates = {other["learning_rate"] for other in records if other["optimizer"] == name}
    if len(rates) > 1:
        label += f", lr {record['learning_rate']:g}"
    for field, shown in SWEPT:
        if len({other.get(field) for other in records}) > 1:
            label += ", " + shown.format(record.get(field))
    return label


def _series(group: Group) -> dict[str, list[dict]]:
    """Records of the group by optimizer label, each list in axis order."""
    series: dict[str, list[dict]] = defaultdict(list)
    for record in group.records:
        series[optimizer_label(record, group.records)].append(record)
    return {
        label: sorted(cells, key=lambda record: record[group.axis])
        for label, cells in series.items()
    }


def _style(index: int) -> dict:
    return {
        "color": COLOURS[index % len(COLOURS)],
        "marker": MARKERS[index % len(MARKERS)],
        "linestyle": LINESTYLES[index % len(LINESTYLES)],
    }


def _dodged(values, index: int, count: int, log: bool) -> np.ndarray:
    """Axis positions nudged per series so that intervals do not hide each other."""
    shift = (index - (count - 1) / 2) * min(0.04, 0.3 / max(count, 1))
    values = np.asarray(values, dtype=float)
    return values * 2.0**shift if log else values + shift * 2


def _log2_axis(axes, values: list[int]) -> None:
    axes.set_xscale("log", base=2)
    axes.set_xticks(values, [str(value) for value in values])
    axes.minorticks_off()


def _proportion_arrays(cells: list[dict], key: str):
    """Fractions and their interval half-lengths of ``key``; NaN where unknown."""
    fraction, low, high = [], [], []
    for record in cells:
        entry = record.get(key) or {}
        known = entry.get("fraction") is not None
        fraction.append(entry["fraction"] if known else math.nan)
        low.append(entry["low"] if known else math.nan)
        high.append(entry["high"] if known else math.nan)
    fraction, low, high = (np.array(x, dtype=float) for x in (fraction, low, high))
    return fraction, np.vstack([fraction - low, high - fraction])


def _first_layer_certifies(record: dict) -> bool:
    """Whether a certified inactive first-layer neuron certifies that the cell's run
    does not converge: for a shallow student of a teacher of its own width with
    optimal risk 0 on a box (see :func:`relutrap.engine.certified_nonconvergent`).
    Elsewhere (deeper cells, a narrower teacher, which leaves room for dead neurons,
    targets whose optimal risk is not known, data sets) only a collapse or several
    dead neurons certify, and ``1 - (1 - p)^l1`` bounds no verdict of the cell."""
    return (
        record["depth"] == 1
        and record.get("data") is None
        and record.get("target") == "teacher"
        and record.get("teacher_width") == record["architecture"][1]
        and record.get("optimal_risk") == 0.0
    )


def _p_key(record: dict) -> float | None:
    p = record.get("p_first_layer_neuron")
    return None if p is None else round(float(p), 12)


def _theory_variants(group: Group) -> dict[float, tuple[int, str]]:
    """The distinct per-neuron probabilities ``p`` of the group's cells, ascending,
    each with the index of its theory line style and the words that tell it apart:
    ``p`` (and how it was computed, where not exactly) and, where the group has several
    initializations, the ones of that ``p``."""
    keys = sorted({_p_key(record) for record in group.records} - {None})
    several = len({record.get("init") for record in group.records}) > 1
    variants = {}
    for index, key in enumerate(keys):
        cells = [record for record in group.records if _p_key(record) == key]
        text = f"p = {key:.4g}"
        methods = dict.fromkeys(
            str(record.get("p_method"))
            for record in cells
            if record.get("p_method") != "exact"
        )
        if methods:
            text += ", " + ", ".join(methods)
        if several:
            schemes = dict.fromkeys(str(record.get("init")) for record in cells)
            text += f" ({', '.join(schemes)} init)"
        variants[key] = (index, text)
    return variants


def _theory_width(group: Group) -> list[tuple[float, str]]:
    """The distinct per-neuron probabilities p of the group's cells whose dead
    first-layer neuron certifies non-convergence (see
    :func:`_first_layer_certifies`), labelled."""
    certifying = {
        _p_key(record) for record in group.records if _first_layer_certifies(record)
    }
    return [
        (key, text)
        for key, (_, text) in _theory_variants(group).items()
        if key in certifying
    ]


def _draw_proportions(axes, group, series, key, log_x=True) -> bool:
    """Draw ``key`` with intervals per optimizer; whether anything was known."""
    drawn = False
    for index, (label, cells) in enumerate(series.items()):
        fraction, error = _proportion_arrays(cells, key)
        if np.all(np.isnan(fraction)):
            continue
        x = _dodged([record[group.axis] for record in cells], index, len(series), log_x)
        axes.errorbar(
            x,
            fraction,
            yerr=error,
            label=label,
            capsize=2.5,
            markersize=5,
            linewidth=1.2,
            elinewidth=0.9,
            **_style(index),
        )
        drawn = True
    return drawn


def _draw_theory(axes, x, y, index: int, label: str) -> None:
    """One theory curve in the line style and grey of ``index``; through a single
    position it is a short horizontal tick there, so that it shows."""
    linestyle, colour = THEORY_STYLES[index % len(THEORY_STYLES)]
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    single = np.unique(x).size == 1
    axes.plot(
        x[:1] if single else x,
        y[:1] if single else y,
        color=colour,
        linestyle=linestyle,
        linewidth=2.2,
        alpha=0.8,
        marker="_" if single else "None",
        markersize=26,
        markeredgewidth=2.4,
        label=label,
        zorder=1,
    )


def _draw_width_theory(axes, group: Group, complement: bool = False) -> None:
    """The theory's ``1 - (1 - p)^l1`` (``(1 - p)^l1`` for ``complement``) over the
    widths of the cells it bounds, one curve per distinct ``p``."""
    variants = _theory_variants(group)
    for key, text in _theory_width(group):
        widths = [
            record["width"]
            for record in group.records
            if _first_layer_certifies(record) and _p_key(record) == key
        ]
        grid = np.linspace(min(widths), max(widths), 200)
        survival = (1 - key) ** grid
        formula = "$(1-p)^{l_1}$" if complement else "$1-(1-p)^{l_1}$"
        _draw_theory(
            axes,
            grid,
            survival if complement else 1 - survival,
            variants[key][0],
            f"theory {formula}, {text}",
        )


def _draw_recorded_theory(
    axes,
    group: Group,
    field: str,
    label: str,
    cells=None,
    complement=False,
    style=0,
) -> None:
    """The theory's probability ``field`` of each cell of ``cells`` (default: the
    group's) at its axis value, one curve per distinct ``p``, its line style
    shifted by ``style``; ``1 -`` it for ``complement``."""
    cells = group.records if cells is None else cells
    variants = _theory_variants(group)
    for key, (index, text) in variants.items():
        points = {}
        for record in cells:
            value = record.get(field)
            if _p_key(record) == key and isinstance(value, int | float):
                points.setdefault(record[group.axis], float(value))
        if not points:
            continue
        values = sorted(points)
        theory = np.array([points[value] for value in values])
        _draw_theory(
            axes,
            values,
            1 - theory if complement else theory,
            index + style,
            label + (f", {text}" if len(variants) > 1 else ""),
        )


COLLAPSE_BOUND = "theory: lower bound on certified collapse"


def _draw_collapse_bound(
    axes, group: Group, cells=None, complement=False, label=COLLAPSE_BOUND
) -> None:
    """The theory's lower bound on certified collapse per axis value, where the
    summary has it (``theory_certified_collapse``); ``1 -`` it for
    ``complement``, under the same label."""
    _draw_recorded_theory(
        axes, group, "theory_certified_collapse", label, cells, complement
    )


def _unknown(axes, text: str) -> None:
    axes.text(
        0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center", wrap=True
    )


def _fits_of(fits, group: Group, cells: list[dict], event: str):
    """The rate fits of ``event`` through one optimizer's cells of the group: same
    part, optimizer and, where the fit records them, every factor it holds fixed."""
    first = cells[0]
    other = "depth" if group.axis == "width" else "width"
    for fit in fits:
        held = fit.get("held_fixed")
        if (
            fit.get("event") == event
            and fit.get("axis") == group.axis
            and fit.get("part") == first["part"]
            and fit.get("optimizer") == first["optimizer"]
            and fit.get("convention") == first.get("convention")
            and fit.get("learning_rate") == first["learning_rate"]
            and (fit.get("fixed") or {}).get(other) == first[other]
            and (held is None or held == held_fixed(first))
        ):
            yield fit


def matching_fit(fits, group: Group, cells: list[dict], event: str) -> dict | None:
    """The rate fit of ``event`` for one optimizer's cells of the group, if
    ``fits`` (see :func:`relutrap.analysis.rates`) hold one."""
    for fit in _fits_of(fits, group, cells, event):
        if fit.get("slope") is not None and fit.get("intercept") is not None:
            return fit
    return None


def _theory_slope(fits, group: Group, series, event: str) -> float | None:
    """The slope of the theory's ``log(1 - P)`` of ``event`` in the group's fits."""
    for cells in series.values():
        for fit in _fits_of(fits, group, cells, event):
            if fit.get("theory_slope") is not None:
                return fit["theory_slope"]
    return None


def _draw_fits(axes, group: Group, series, fits, event) -> None:
    """Fitted lines ``1 - P = exp(intercept + slope x)`` of ``event``, thin and in
    each optimizer's colour."""
    values = np.linspace(min(group.values()), max(group.values()), 50)
    for index, cells in enumerate(series.values()):
        fit = matching_fit(fits, group, cells, event)
        if fit is None:
            continue
        axes.plot(
            values,
            np.exp(fit["intercept"] + fit["slope"] * values),
            color=COLOURS[index % len(COLOURS)],
            linewidth=0.9,
            alpha=0.7,
            label=f"fit, slope {fit['slope']:.3f}",
        )


def _complement_points(axes, group: Group, series, key: str) -> float:
    """``1 - P(key)`` per optimizer with its interval; a cell whose every run had
    the event shows its interval's upper end as a downward triangle.  Returns the
    smallest positive value drawn (infinite if none)."""
    floor = math.inf
    for index, (label, cells) in enumerate(series.items()):
        fraction, error = _proportion_arrays(cells, key)
        complement = 1 - fraction
        upper = complement + error[0]
        lower = complement - error[1]
        x = _dodged(
            [record[group.axis] for record in cells], index, len(series), log=False
        )
        style = _style(index)
        positive = complement > 0
        axes.errorbar(
            x[positive],
            complement[positive],
            yerr=np.vstack(
                [
                    complement[positive] - np.maximum(lower[positive], 1e-12),
                    upper[positive] - complement[positive],
                ]
            ),
            label=label,
            capsize=2.5,
            markersize=5,
            linewidth=1.2,
            elinewidth=0.9,
            **style,
        )
        if np.any(~positive):
            axes.plot(
                x[~positive],
                upper[~positive],
                linestyle="none",
                marker="v",
                markerfacecolor="none",
                color=style["color"],
                markersize=7,
            )
        finite = upper[np.isfinite(upper) & (upper > 0)]
        if finite.size:
            floor = min(floor, finite.min())
        if np.any(positive):
            floor = min(floor, complement[positive].min())
    return floor


def _log_scale(axes, group: Group, floor: float, ylabel: str, title: str) -> None:
    """A log scale of ``1 - P`` that reaches down to the smallest point and the
    smallest theory value drawn."""
    for line in axes.get_lines():
        if line.get_label().startswith("theory"):
            y = np.asarray(line.get_ydata(), dtype=float)
            y = y[np.isfinite(y) & (y > 0)]
            if y.size:
                floor = min(floor, y.min())
    axes.set_yscale("log")
    if math.isfinite(floor):
        axes.set_ylim(bottom=max(floor / 3, 1e-6), top=1.5)
    values = group.values()
    axes.set_xticks(values, [str(value) for value in values])
    axes.set_xlabel(AXIS_LABELS[group.axis])
    axes.set_ylabel(ylabel)
    axes.set_title(title)


def _complement_panel(axes, group: Group, series, fits=()) -> None:
    """``1 - P(certified non-convergence)`` against the width on a log scale, with
    the theory of :func:`_probability_panels` and the fitted rates."""
    floor = _complement_points(axes, group, series, "certified_nonconvergent")
    _draw_width_theory(axes, group, complement=True)
    others = [r for r in group.records if not _first_layer_certifies(r)]
    _draw_collapse_bound(axes, group, others, complement=True)
    _draw_fits(axes, group, series, fits, "certified_nonconvergent")
    _log_scale(
        axes,
        group,
        floor,
        "1 − P(certified non-convergence), log scale",
        "1 − P, log scale (▽: upper end where P = 1)",
    )


# Along depth, the events whose 1 - P is drawn on a log scale with their fitted
# rates: (event, its theory field, title, theory's label, theory's line style).
DEPTH_LOG_EVENTS = (
    (
        "some_certified_inactive",
        "theory_some_certified_inactive",
        "Some neuron certified inactive",
        "theory: some neuron certified inactive",
        1,
    ),
    ("collapsed", "theory_certified_collapse", "Collapsed", COLLAPSE_BOUND, 0),
)


def _depth_theory_label(fits, group: Group, series, event) -> str:
    """The label of an event's theory along depth, with the slope of its
    ``log(1 - P)`` from the summary's fits where they have it."""
    key, _, _, label, _ = event
    slope = _theory_slope(fits, group, series, key)
    return label if slope is None else f"{label} (slope of log(1 − P): {slope:.3f})"


def _depth_log_panel(axes, group: Group, series, fits, event) -> None:
    """``1 - P(event)`` against the depth on a log scale, with the theory through
    the depths (its slope that of the summary's fits) and the fitted rates."""
    key, field, title, _, style = event
    floor = _complement_points(axes, group, series, key)
    label = _depth_theory_label(fits, group, series, event)
    _draw_recorded_theory(axes, group, field, label, complement=True, style=style)
    _draw_fits(axes, group, series, fits, key)
    _log_scale(
        axes,
        group,
        floor,
        f"1 − P({title.lower()}), log scale",
        f"{title}:\n1 − P, log scale (▽: upper end where P = 1)",
    )


def _legend_entries(axes) -> tuple[list, list[str]]:
    """The handles and labels of every panel, once each, the optimizers before
    the theory, fitted lines left out."""
    legend = {}
    for panel in axes:
        for handle, label in zip(*panel.get_legend_handles_labels()):
            if not label.startswith("fit"):
                legend.setdefault(label, handle)
    labels = sorted(legend, key=lambda label: label.startswith("theory"))
    handles = [legend[label] for label in labels]
    if any(
        line.get_label().startswith("fit") for panel in axes for line in panel.lines
    ):
        handles.append(Line2D([], [], color="0.4", linewidth=0.9, alpha=0.7))
        labels.append("fitted log(1 − P), thin, in each optimizer's colour")
    return handles, labels


def _probability_panel(
    axes, group, series, key, title, collapse_label=COLLAPSE_BOUND
) -> None:
    """One panel of a non-convergence probability with its theory (see
    :func:`probability_figure`)."""
    drawn = _draw_proportions(axes, group, series, key)
    if group.axis == "width" and key == "certified_nonconvergent":
        _draw_width_theory(axes, group)
        others = [r for r in group.records if not _first_layer_certifies(r)]
        _draw_collapse_bound(axes, group, others)
    if group.axis == "width" and key == "observed_nonconvergent":
        _draw_width_theory(axes, group)
    if key == "collapsed":
        _draw_collapse_bound(axes, group, label=collapse_label)
    if not drawn:
        _unknown(axes, "not known:\nthe optimal risk of this\nproblem is not known")
    _log2_axis(axes, group.values())
    axes.set_ylim(-0.03, 1.03)
    axes.set_xlabel(AXIS_LABELS[group.axis])
    axes.set_ylabel("probability (95% Clopper-Pearson interval)")
    axes.set_title(title)


def probability_figure(group: Group, fits=()) -> Figure:
    """Non-convergence against the group's axis: certified and observed (and
    collapsed, against depth), each with 95% intervals, and ``1 - P`` on a log
    scale with the fitted rates where ``fits`` (see
    :func:`relutrap.analysis.rates`) hold them.

    The theory is drawn only beside a quantity it bounds.  Against width: the
    theory's ``1 - (1 - p)^l1`` beside certified and observed non-convergence of the
    cells where a dead first-layer neuron certifies it (see
    :func:`_first_layer_certifies`); for the other cells, whose certified verdict
    comes from collapses only, the lower bound on certified collapse beside the
    certified verdict, and nothing beside the observed one.  Against depth: the
    bound on collapse beside the collapsed runs, and on the log scale ``1 - P`` of
    the two events the summary fits along depth, "some neuron certified inactive"
    and "collapsed", each with its theory and fitted lines.
    """
    series = _series(group)
    with rc_context(STYLE):
        if group.axis == "width":
            figure = Figure(figsize=(13.2, 4.3), layout="constrained")
            certified, observed, complement = figure.subplots(1, 3)
            _probability_panel(
                certified,
                group,
                series,
                "certified_nonconvergent",
                "Certified non-convergence",
            )
            _probability_panel(
                observed,
                group,
                series,
                "observed_nonconvergent",
                "Observed non-convergence",
            )
            _complement_panel(complement, group, series, fits)
            panels = [certified, observed, complement]
            handles, labels = _legend_entries(panels)
            _finish(figure, handles, labels, 6)
        else:
            figure = Figure(figsize=(13.2, 7.6), layout="constrained")
            grid = figure.subplots(2, 3)
            collapse = _depth_theory_label(fits, group, series, DEPTH_LOG_EVENTS[1])
            for panel, (key, title) in zip(
                grid[0],
                [
                    ("certified_nonconvergent", "Certified non-convergence"),
                    ("observed_nonconvergent", "Observed non-convergence"),
                    ("collapsed", "Collapsed (some layer inactive)"),
                ],
            ):
                _probability_panel(panel, group, series, key, title, collapse)
            for panel, event in zip(grid[1], DEPTH_LOG_EVENTS):
                _depth_log_panel(panel, group, series, fits, event)
            handles, labels = _legend_entries(list(grid.flat))
            grid[1, 2].axis("off")
            grid[1, 2].legend(
                handles,
                labels,
                loc="center",
                ncols=math.ceil(len(labels) / 14),
                frameon=False,
            )
        _title(figure, f"{group.title}: non-convergence against {group.axis}")
    return figure


def _finish(figure: Figure, handles, labels, columns: int) -> None:
    """A figure legend below the panels in at most ``columns`` columns: fewer where
    it would be wider than the figure (and the figure wider where even one column
    is), the figure taller where its rows need more than their allowance."""
    if not labels:
        return
    available = figure.bbox.width * 0.97
    for ncols in range(min(columns, len(labels)), 0, -1):
        legend = figure.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=ncols,
            frameon=False,
        )
        extent = legend.get_window_extent()
        if extent.width <= available or ncols == 1:
            break
        legend.remove()
    if extent.width > available:
        figure.set_figwidth((extent.width + 0.04 * figure.bbox.width) / figure.dpi)
    extra = extent.height / figure.dpi - 0.5
    if extra > 0:
        figure.set_figheight(figure.get_figheight() + extra)


def _title(figure: Figure, text: str) -> None:
    """The figure's title, wrapped into lines of about equal length where one line
    would be wider than the figure."""
    title = figure.suptitle(text)
    available = figure.bbox.width * 0.96
    lines = math.ceil(title.get_window_extent().width / available)
    while lines > 1 and title.get_window_extent().width > available:
        title.set_text(textwrap.fill(text, math.ceil(len(text) / lines) + 2))
        lines += 1
        if lines > 8:
            break


def _levels(record: dict) -> list[float] | None:
    """The risk levels ``R_0, ..., R_l1`` of a cell's summary, if it has them."""
    block = record.get("levels")
    if isinstance(block, dict):
        block = block.get("risks")
    if isinstance(block, list) and all(
        isinstance(value, int | float) for value in block
    ):
        return [float(value) for value in block]
    return None


def _panel_grid(count: int, width: float = 3.6, height: float = 3.2):
    columns = min(count, 5)
    rows = math.ceil(count / columns)
    figure = Figure(
        figsize=(max(width * columns + 0.6, MIN_FIGURE_WIDTH), height * rows + 1.0),
        layout="constrained",
    )
    axes = figure.subplots(rows, columns, squeeze=False)
    for extra in axes.flat[count:]:
        extra.set_visible(False)
    return figure, axes.flat[:count]


def census_class(count: int) -> int:
    """The colour class of a run with ``count`` certified inactive neurons."""
    return min(count, CENSUS_CLASSES - 1)


def _tolerance_limit(record: dict) -> float | None:
    """The largest final risk a converged run of the cell may have: the optimal
    risk, or on a data set the best run's final risk (see the summary's
    ``reference``), plus the tolerance times the variance of the target."""
    reference = record.get("optimal_risk")
    if reference is None:
        reference = record.get("best_final_risk")
    if reference is None:
        return None
    variance = max(record["target_variance"], 0.0)
    limit = reference + record["tolerance"] * (variance if variance > 0 else 1.0)
    return limit if limit > 0 else None


def _risk_range(group: Group, stacks: list[list[list[float]]]) -> tuple[float, float]:
    """One log-scale range for every panel: from a hundredth of the smallest
    tolerance limit (lower risks are counted in the first bin) or the smallest risk,
    to the largest risk, widened to show every tolerance limit (see
    :func:`_tolerance_limit`) and every risk level above that floor (a level below
    it, such as a realizable level found as ``1e-30``, is a converged fit)."""
    risks = np.array([r for panel in stacks for stack in panel for r in stack])
    positive = risks[risks > 0]
    if positive.size == 0:
        return 1e-3, 1.0
    low, high = positive.min(), positive.max()
    limits = [_tolerance_limit(record) for record in group.records]
    limits = [limit for limit in limits if limit is not None]
    floor = min(limits) / 100 if limits else 0.0
    low = max(low, floor)
    levels = [
        level
        for record in group.records
        for level in (_levels(record) or [])
        if level > floor
    ]
    if levels:
        low, high = min(low, min(levels) / 2), max(high, max(levels) * 2)
    if limits:
        low, high = min(low, min(limits) / 2), max(high, max(limits) * 2)
    if high <= low * 1.01:
        low, high = low / 2, high * 2
    return low, high


def _spaced_labels(
    levels: list[tuple[int, float]], low: float, high: float, gap: float = 0.06
) -> list[tuple[int, float]]:
    """The levels ``(k, R_k)`` to label on a log axis from ``low`` to ``high``: from
    ``R_0`` (the largest) down, each at least ``gap`` of the axis from the last one
    labelled, so that crowded levels keep their lines but not overlapping names."""
    span = math.log(high / low)
    labelled: list[tuple[int, float]] = []
    for k, level in sorted(levels, key=lambda item: -item[1]):
        if not labelled or math.log(labelled[-1][1] / level) >= gap * span:
            labelled.append((k, level))
    return labelled


def final_risk_figure(group: Group, runs: dict[str, list[dict]]) -> Figure:
    """Histograms of the final risk per axis value (all optimizers of the group
    together), stacked by the runs' certified inactive neurons at initialization,
    with the tolerance and, where the summary has them, the risk levels ``R_k``.
    All panels share one log-scale range; risks below it (exact fits, risk 0) are
    counted in the first bin."""
    values = group.values()
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, CENSUS_CLASSES))
    stacks, missing = [], []
    for value in values:
        panel_stacks = [[] for _ in range(CENSUS_CLASSES)]
        diverged = 0
        for record in group.records:
            if record[group.axis] != value:
                continue
            for run in runs.get(record["cell"], []):
                if run["final_risk"] is None:
                    diverged += 1
                else:
                    panel_stacks[census_class(run["certified_any"])].append(
                        run["final_risk"]
                    )
        stacks.append(panel_stacks)
        missing.append(diverged)
    low, high = _risk_range(group, stacks)
    edges = np.geomspace(low, high, 36)
    with rc_context(STYLE):
        figure, panels = _panel_grid(len(values))
        for panel, value, panel_stacks, diverged in zip(
            panels, values, stacks, missing
        ):
            cells = [record for record in group.records if record[group.axis] == value]
            panel.hist(
                [np.clip(stack, low, high) for stack in panel_stacks],
                bins=edges,
                stacked=True,
                color=colours,
                edgecolor="white",
                linewidth=0.3,
            )
            panel.set_xscale("log")
            record = cells[0]
            limit = _tolerance_limit(record)
            if limit is not None:
                panel.axvline(limit, color="black", linestyle=":", linewidth=1.2)
            levels = _levels(record)
            shown = [(k, level) for k, level in enumerate(levels or []) if level > low]
            for _, level in shown:
                panel.axvline(level, color="#C85200", linestyle="--", linewidth=0.9)
            for k, level in _spaced_labels(shown, low, high):
                panel.annotate(
                    f"$R_{{{k}}}$",
                    (level, 1.0),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color="#C85200",
                )
            title = f"{AXIS_SYMBOLS[group.axis]} = {value}"
            if diverged:
                title += f" ({diverged} diverged)"
            panel.set_title(title, pad=12 if levels else 6)
            panel.set_xlim(low, high)
            panel.yaxis.set_major_locator(MaxNLocator(integer=True))
            panel.set_xlabel("final risk (log scale)")
            panel.set_ylabel("runs")
        # Only the classes a run of the group can be in: at most all its neurons.
        neurons = max(sum(record["architecture"][1:-1]) for record in group.records)
        names = [str(k) for k in range(min(neurons, CENSUS_CLASSES - 1) + 1)]
        if neurons > CENSUS_CLASSES - 1:
            names[-1] = f"≥ {CENSUS_CLASSES - 1}"
        handles = [Patch(color=colour) for colour in colours[: len(names)]]
        labels = [f"{name} certified inactive" for name in names]
        if any(_tolerance_limit(record) is not None for record in group.records):
            handles.append(Line2D([], [], color="black", linestyle=":"))
            labels.append("tolerance: optimal risk (or best run) + tol · Var f(X)")
        if any(_levels(record) for record in group.records):
            handles.append(Line2D([], [], color="#C85200", linestyle="--"))
            labels.append("risk levels $R_k$ (k live first-layer neurons)")
        _finish(figure, handles, labels, 4)
        _title(
            figure,
            f"{group.title}: final risk of every run, by its certified inactive "
            "neurons at initialization (all optimizers)",
        )
    return figure


def _census_means(cells: list[dict], runs: dict[str, list[dict]], field: str):
    """Mean fraction of hidden neurons counted in census ``field`` per run."""
    fractions = []
    for record in cells:
        neurons = sum(record["architecture"][1:-1])
        for run in runs.get(record["cell"], []):
            fractions.append(sum(run["census"][field]) / neurons)
    return float(np.mean(fractions)) if fractions else math.nan


def census_figure(group: Group, runs: dict[str, list[dict]]) -> Figure:
    """The inactivity census at initialization and at the end of training: mean
    fraction of hidden neurons inactive (all optimizers together), and the observed
    fraction at the end per optimizer."""
    values = group.values()
    series = _series(group)
    revived = sum(record["revived"] for record in group.records)
    kinds = [
        ("certified_init", "certified, at init", "-", "o"),
        ("certified_end", "certified, at end", "--", "o"),
        ("observed_init", "observed on the evaluation inputs, at init", "-", "s"),
        ("observed_end", "observed on the evaluation inputs, at end", "--", "s"),
    ]
    with rc_context(STYLE):
        figure = Figure(figsize=(10.5, 4.3), layout="constrained")
        pooled, per_optimizer = figure.subplots(1, 2)
        for index, (field, label, linestyle, marker) in enumerate(kinds):
            means = [
                _census_means(
                    [r for r in group.records if r[group.axis] == value], runs, field
                )
                for value in values
            ]
            pooled.plot(
                values,
                means,
                label=label,
                color=COLOURS[index],
                linestyle=linestyle,
                marker=marker,
                markerfacecolor="none" if "end" in field else COLOURS[index],
            )
        pooled.set_title(
            f"All optimizers ({revived} revived neuron{'s' if revived != 1 else ''})"
        )
        pooled.legend(frameon=False)
        for index, (label, cells) in enumerate(series.items()):
            per_optimizer.plot(
                _dodged(
                    [record[group.axis] for record in cells],
                    index,
                    len(series),
                    log=True,
                ),
                [_census_means([record], runs, "observed_end") for record in cells],
                label=label,
                **_style(index),
            )
        init = [
            _census_means(
                [r for r in group.records if r[group.axis] == value],
                runs,
                "observed_init",
            )
            for value in values
        ]
        # one position: a short horizontal tick, so that the line shows
        per_optimizer.plot(
            values,
            init,
            color=THEORY_COLOUR,
            linewidth=2.2,
            alpha=0.6,
            marker="_" if len(values) == 1 else "None",
            markersize=26,
            markeredgewidth=2.4,
            label="at init (all optimizers)",
        )
        per_optimizer.set_title("Observed inactive at the end, per optimizer")
        # beside the panel, where it hides no point
        per_optimizer.legend(
            frameon=False,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            ncols=math.ceil((len(series) + 1) / 14),
        )
        for panel in (pooled, per_optimizer):
            _log2_axis(panel, values)
            # room above the highest point, whose marker would be cut in half
            heights = [
                y
                for line in panel.get_lines()
                for y in np.asarray(line.get_ydata(), dtype=float)
                if math.isfinite(y)
            ]
            panel.set_ylim(0, max(max(heights, default=0.0) * 1.1, 0.05))
            panel.set_xlabel(AXIS_LABELS[group.axis])
            panel.set_ylabel("inactive hidden neurons per run (fraction)")
        _title(figure, f"{group.title}: inactivity census, initialization and end")
    return figure


def _quartiles(risks: list[list[float | None]]) -> np.ndarray:
    """Quartiles per checkpoint, shape ``(3, checkpoints)``, each a risk of some run
    (no interpolation); diverged risks (None) count as infinite, so a quartile is
    infinite (not drawn) once enough runs diverged."""
    table = np.array(
        [[math.inf if risk is None else risk for risk in run] for run in risks],
        dtype=float,
    )
    # no interpolation: the infinite risks of diverged runs stay infinite
    return np.quantile(table, [0.25, 0.5, 0.75], axis=0, method="inverted_cdf")


def _trained(group: Group) -> bool:
    """Whether some cell of the group trains for at least one step."""
    return any(record.get("steps", 1) > 0 for record in group.records)


def trajectory_figure(group: Group, study: Study) -> Figure:
    """The risk at the checkpoints per axis value: median and quartiles over the
    runs of each optimizer.  A cell with a single checkpoint (``steps = 0``: the
    risk at initialization only) is a median with bars to the quartiles; where no
    cell of the group trains, the step axis is linear around step 0."""
    values = group.values()
    series = _series(group)
    with rc_context(STYLE):
        figure, panels = _panel_grid(len(values), width=3.8, height=3.3)
        for panel, value in zip(panels, values):
            for index, (_, cells) in enumerate(series.items()):
                for record in cells:
                    if record[group.axis] != value:
                        continue
                    risks = [
                        run["checkpoint_risk"]
                        for run in study.runs.get(record["cell"], [])
                    ]
                    if not risks:
                        continue
                    steps = np.array(study.checkpoint_steps[record["cell"]])
                    low, median, high = _quartiles(risks)
                    style = _style(index)
                    if steps.size == 1:
                        panel.errorbar(
                            _dodged(steps, index, len(series), log=False),
                            median,
                            yerr=np.vstack([median - low, high - median]),
                            capsize=3,
                            markersize=5,
                            **style,
                        )
                        continue
                    panel.fill_between(
                        steps, low, high, color=style["color"], alpha=0.12, linewidth=0
                    )
                    panel.plot(steps, median, markersize=3.5, **style)
            if _trained(group):
                panel.set_xscale("symlog", linthresh=1)
                panel.set_xlabel("training step (0, then log scale)")
            else:
                panel.set_xlim(-1, 1)
                panel.set_xticks([0])
                panel.set_xlabel("training step (steps = 0: initialization only)")
            panel.set_yscale("log")
            panel.set_title(f"{AXIS_SYMBOLS[group.axis]} = {value}")
            panel.set_ylabel("risk")
        handles = [
            Line2D([], [], markersize=5, **_style(index))
            for index in range(len(series))
        ]
        _finish(figure, handles, list(series), 9)
        _title(
            figure,
            f"{group.title}: risk during training (median, band: quartiles of runs)"
            if _trained(group)
            else f"{group.title}: risk at initialization, no training (median, "
            "bars: quartiles of runs)",
        )
    return figure


def _probability_caption(group: Group) -> str:
    """What the probability figure of ``group`` shows, its theory in particular."""
    text = (
        "Fraction of runs certified not to converge (a certified inactive neuron "
        "at initialization implies a risk gap) and observed not to converge (final "
        "risk above the tolerance), with 95% Clopper-Pearson intervals, "
        f"{len(group.records)} cells. "
    )
    if group.axis == "depth":
        return text + (
            "Against depth, certified non-convergence comes from collapsed "
            "networks: some hidden layer is inactive on the whole domain. The "
            "black line beside the collapsed runs is the theory's lower bound on "
            "certified collapse. On the log scale, 1 - P of some neuron certified "
            "inactive and of a collapse, with the theory through the depths (its "
            "slope, that of the rates table, in the legend) and the fitted lines "
            "of the rates, thin, in each optimizer's colour."
        )
    first_layer = [r for r in group.records if _first_layer_certifies(r)]
    if first_layer:
        text += (
            "The black and grey curves are the theory's 1-(1-p)^l1, one line "
            "style per distinct p; on the log scale of 1 - P each is a line of "
            "slope log(1-p), beside the fitted lines of the rates (thin, in each "
            "optimizer's colour)."
        )
    if len(first_layer) < len(group.records):
        text += (
            " Where a dead first-layer neuron certifies nothing (a network deeper "
            "than one hidden layer, a target other than a realizable teacher, "
            "whose optimal risk is not known, or a data set), the certified "
            "verdict comes from collapses only: beside it the theory's lower bound "
            "on certified collapse is drawn, and 1-(1-p)^l1, which bounds no "
            "verdict there, is left out; so is any theory beside the observed "
            "verdict, which needs the optimal risk."
        )
    return text


def _trajectory_caption(group: Group) -> str:
    text = (
        "Risk at log-spaced checkpoints: median over the runs of each optimizer, "
        "band from the first to the third quartile."
    )
    if not _trained(group):
        return (
            "No cell of this part trains (steps = 0): the risk at initialization "
            "of each optimizer's runs, median with bars from the first to the third "
            "quartile, on a linear axis around step 0."
        )
    if any(record.get("steps") == 0 for record in group.records):
        text += (
            " A cell of 0 steps shows its risk at initialization only: median "
            "with bars to the quartiles at step 0."
        )
    return text


def study_figures(study: Study) -> list[Drawn]:
    """Every figure of a study, with titles and captions for the report; names
    are unique within the study (see :func:`groups`)."""
    drawn = []
    for group in groups(study.records):
        axis = group.axis
        drawn.append(
            Drawn(
                f"{group.name}-probability",
                f"{group.title}: non-convergence against {axis}",
                _probability_caption(group),
                probability_figure(group, study.rates),
            )
        )
        drawn.append(
            Drawn(
                f"{group.name}-final-risk",
                f"{group.title}: final risks",
                "Final risk of every run (log scale, one range for all panels, "
                "which holds the tolerance; lower risks are counted in the first "
                "bin), stacked by its number of certified inactive neurons at "
                "initialization. The dotted line is the tolerance, where the "
                "optimal risk (or, on a data set, the best run) is known; dashed "
                "lines, where shown, are the risk levels R_k.",
                final_risk_figure(group, study.runs),
            )
        )
        drawn.append(
            Drawn(
                f"{group.name}-census",
                f"{group.title}: inactivity census",
                "Mean fraction of hidden neurons inactive per run at initialization "
                "and after the last step: certified (proven on the whole domain) and "
                "observed (inactive on every evaluation input). A certified neuron "
                "that became active again would count as revived.",
                census_figure(group, study.runs),
            )
        )
        drawn.append(
            Drawn(
                f"{group.name}-trajectories",
                f"{group.title}: risk during training",
                _trajectory_caption(group),
                trajectory_figure(group, study),
            )
        )
    return drawn


def save(figure: Figure, directory: Path, name: str, formats: Iterable[str]) -> dict:
    """Write ``figure`` as ``directory/name.<format>`` for each format; returns the
    paths by format."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for format in formats:
        path = directory / f"{name}.{format}"
        figure.savefig(path, format=format, dpi=DPI)
        paths[format] = path
    return paths
