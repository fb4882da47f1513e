"""Figures of a study, drawn with matplotlib from its summary records and runs.

A study's cells are split into *groups*: the cells of one part that share every
architecture coordinate but one, the *axis* (the width ``l1`` of the first hidden
layer, or the depth ``L``).  Each group gets

* ``probability``: certified and observed non-convergence against the axis, with 95%
  Clopper-Pearson intervals and, against width, the theory's ``1 - (1 - p)^l1``;
  against depth also the collapse probability; and ``1 - P`` on a log scale, where
  ``log(1 - P)`` is linear in the width with slope ``log(1 - p)``;
* ``final-risk``: histograms of the final risk per axis value, runs stacked by their
  number of certified inactive neurons at initialization, with the risk levels
  ``R_k`` where the summary has them;
* ``census``: the mean fraction of hidden neurons inactive at initialization and at
  the end of training, certified and observed;
* ``trajectories``: the risk at the checkpoints, median and quartiles per optimizer.

Every figure function is pure: it returns a :class:`matplotlib.figure.Figure`, made
without pyplot (so no global figure registry and no display), and leaves saving to
:func:`save`.  Colours come from matplotlib's colour-blind-safe
``tableau-colorblind10`` cycle, each optimizer also gets its own marker and line
style, and ordered counts use the sequential ``viridis`` map, which stays ordered in
grey print.
"""

from __future__ import annotations

import math
import re
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

from relutrap.report.study import Study

FORMATS = ("png", "svg", "pdf")
DPI = 150

COLOURS = matplotlib.style.library["tableau-colorblind10"]["axes.prop_cycle"].by_key()[
    "color"
]
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "h", "<", ">", "p")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
THEORY_COLOUR = "black"

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


def groups(records: Iterable[dict]) -> list[Group]:
    """Split summary records into groups along width or depth.

    A part whose cells vary in depth but not in width is a depth group; otherwise
    its cells are grouped by depth, each group along the width.
    """
    by_part: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_part[record["part"]].append(record)
    found = []
    for part, cells in by_part.items():
        widths = {record["width"] for record in cells}
        depths = {record["depth"] for record in cells}
        if len(depths) > 1 and len(widths) == 1:
            found.append(Group(_safe(part), part, "depth", tuple(cells)))
            continue
        for depth in sorted(depths):
            members = tuple(record for record in cells if record["depth"] == depth)
            if len(depths) == 1:
                found.append(Group(_safe(part), part, "width", members))
            else:
                found.append(
                    Group(
                        _safe(f"{part}-depth{depth}"),
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


def _theory_width(group: Group) -> list[tuple[float, str]]:
    """The distinct per-neuron probabilities p of a width group of shallow cells on
    a box, labelled; none for deeper cells, where a dead first-layer neuron alone
    certifies nothing (deeper layers can make new kinks out of the others), nor on
    a data set, where certified non-convergence comes from collapses only."""
    found = {}
    if any(
        record["depth"] != 1 or record.get("data") is not None
        for record in group.records
    ):
        return []
    for record in group.records:
        p = record.get("p_first_layer_neuron")
        if p is None:
            continue
        suffix = "" if record.get("p_method") == "exact" else ", Monte Carlo"
        found.setdefault(round(p, 12), f"p = {p:.4g}{suffix}")
    return sorted(found.items())


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


def _draw_width_theory(axes, group: Group, complement: bool = False) -> None:
    values = group.values()
    grid = np.linspace(min(values), max(values), 200)
    for p, text in _theory_width(group):
        curve = (1 - p) ** grid if complement else 1 - (1 - p) ** grid
        formula = "$(1-p)^{l_1}$" if complement else "$1-(1-p)^{l_1}$"
        axes.plot(
            grid,
            curve,
            color=THEORY_COLOUR,
            linewidth=2.2,
            alpha=0.75,
            label=f"theory {formula}, {text}",
            zorder=1,
        )


def _draw_collapse_bound(axes, group: Group) -> None:
    """The theory's lower bound on certified collapse per axis value, where the
    summary has it (``theory_certified_collapse``)."""
    points = {}
    for record in group.records:
        bound = record.get("theory_certified_collapse")
        if isinstance(bound, int | float):
            points.setdefault(record[group.axis], float(bound))
    if points:
        values = sorted(points)
        axes.plot(
            values,
            [points[value] for value in values],
            color=THEORY_COLOUR,
            linewidth=2.2,
            alpha=0.75,
            label="theory: lower bound on certified collapse",
            zorder=1,
        )


def _unknown(axes, text: str) -> None:
    axes.text(
        0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center", wrap=True
    )


def matching_fit(fits, group: Group, cells: list[dict], event: str) -> dict | None:
    """The rate fit of ``event`` for one optimizer's cells of the group, if
    ``fits`` (see :func:`relutrap.analysis.rates`) hold one."""
    first = cells[0]
    other = "depth" if group.axis == "width" else "width"
    for fit in fits:
        if (
            fit.get("event") == event
            and fit.get("axis") == group.axis
            and fit.get("part") == first["part"]
            and fit.get("optimizer") == first["optimizer"]
            and fit.get("convention") == first.get("convention")
            and fit.get("learning_rate") == first["learning_rate"]
            and (fit.get("fixed") or {}).get(other) == first[other]
            and fit.get("slope") is not None
            and fit.get("intercept") is not None
        ):
            return fit
    return None


def _draw_fits(axes, group: Group, series, fits) -> None:
    """Fitted lines ``1 - P = exp(intercept + slope x)`` of certified
    non-convergence, thin and in each optimizer's colour."""
    values = np.linspace(min(group.values()), max(group.values()), 50)
    for index, cells in enumerate(series.values()):
        fit = matching_fit(fits, group, cells, "certified_nonconvergent")
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


def _complement_panel(axes, group: Group, series, fits=()) -> None:
    """``1 - P(certified non-convergence)`` on a log scale; a run whose every run
    was certified shows its interval's upper end as a downward triangle."""
    floor = math.inf
    for index, (label, cells) in enumerate(series.items()):
        fraction, error = _proportion_arrays(cells, "certified_nonconvergent")
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
    if group.axis == "width":
        _draw_width_theory(axes, group, complement=True)
    _draw_fits(axes, group, series, fits)
    axes.set_yscale("log")
    if math.isfinite(floor):
        axes.set_ylim(bottom=max(floor / 3, 1e-6), top=1.5)
    values = group.values()
    axes.set_xticks(values, [str(value) for value in values])
    axes.set_xlabel(AXIS_LABELS[group.axis])
    axes.set_ylabel("1 − P(certified non-convergence), log scale")
    axes.set_title("1 − P, log scale (▽: upper end where P = 1)")


def probability_figure(group: Group, fits=()) -> Figure:
    """Non-convergence against the group's axis: certified, observed (and collapsed,
    against depth), each with 95% intervals, and ``1 - P`` on a log scale with the
    fitted rates of certified non-convergence where ``fits`` (see
    :func:`relutrap.analysis.rates`) hold them."""
    series = _series(group)
    values = group.values()
    panels = [
        ("certified_nonconvergent", "Certified non-convergence"),
        ("observed_nonconvergent", "Observed non-convergence"),
    ]
    if group.axis == "depth":
        panels.append(("collapsed", "Collapsed (some layer inactive)"))
    with rc_context(STYLE):
        figure = Figure(figsize=(4.4 * (len(panels) + 1), 4.3), layout="constrained")
        axes = figure.subplots(1, len(panels) + 1)
        for panel, (key, title) in zip(axes, panels):
            drawn = _draw_proportions(panel, group, series, key)
            if group.axis == "width" and key != "collapsed":
                _draw_width_theory(panel, group)
            if key == "collapsed":
                _draw_collapse_bound(panel, group)
            if not drawn:
                _unknown(
                    panel, "not known:\nthe optimal risk of this\nproblem is not known"
                )
            _log2_axis(panel, values)
            panel.set_ylim(-0.03, 1.03)
            panel.set_xlabel(AXIS_LABELS[group.axis])
            panel.set_ylabel("probability (95% Clopper-Pearson interval)")
            panel.set_title(title)
        _complement_panel(axes[-1], group, series, fits)
        legend = {}
        for panel in axes:
            for handle, label in zip(*panel.get_legend_handles_labels()):
                if not label.startswith("fit"):
                    legend.setdefault(label, handle)
        handles, labels = list(legend.values()), list(legend)
        figure.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(len(labels), 6),
            frameon=False,
        )
        figure.suptitle(f"{group.title}: non-convergence against {group.axis}")
    return figure


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
        figsize=(width * columns + 0.6, height * rows + 1.0), layout="constrained"
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
    tolerance (lower risks are counted in the first bin) or the smallest risk, to
    the largest risk, widened to show every risk level above that floor (a level
    below it, such as a realizable level found as ``1e-30``, is a converged fit)."""
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
            panel.set_xlabel("final risk (log scale)")
            panel.set_ylabel("runs")
        names = [str(k) for k in range(CENSUS_CLASSES - 1)]
        names.append(f"≥ {CENSUS_CLASSES - 1}")
        handles = [Patch(color=colour) for colour in colours]
        labels = [f"{name} certified inactive" for name in names]
        handles.append(Line2D([], [], color="black", linestyle=":"))
        labels.append("tolerance: optimal risk (or best run) + tol · Var f(X)")
        if any(_levels(record) for record in group.records):
            handles.append(Line2D([], [], color="#C85200", linestyle="--"))
            labels.append("risk levels $R_k$ (k live first-layer neurons)")
        figure.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(4, 1 + len(values)),
            frameon=False,
        )
        figure.suptitle(
            f"{group.title}: final risk of every run, by its certified inactive "
            "neurons at initialization (all optimizers)"
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
                [record[group.axis] for record in cells],
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
        per_optimizer.plot(
            values,
            init,
            color=THEORY_COLOUR,
            linewidth=2.2,
            alpha=0.6,
            label="at init (all optimizers)",
        )
        per_optimizer.set_title("Observed inactive at the end, per optimizer")
        per_optimizer.legend(frameon=False, ncols=2)
        for panel in (pooled, per_optimizer):
            _log2_axis(panel, values)
            panel.set_ylim(bottom=0)
            panel.set_xlabel(AXIS_LABELS[group.axis])
            panel.set_ylabel("inactive hidden neurons per run (fraction)")
        figure.suptitle(f"{group.title}: inactivity census, initialization and end")
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


def trajectory_figure(group: Group, study: Study) -> Figure:
    """The risk at the checkpoints per axis value: median and quartiles over the
    runs of each optimizer."""
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
                    panel.fill_between(
                        steps, low, high, color=style["color"], alpha=0.12, linewidth=0
                    )
                    panel.plot(steps, median, markersize=3.5, **style)
            panel.set_xscale("symlog", linthresh=1)
            panel.set_yscale("log")
            panel.set_title(f"{AXIS_SYMBOLS[group.axis]} = {value}")
            panel.set_xlabel("training step (0, then log scale)")
            panel.set_ylabel("risk")
        handles = [
            Line2D([], [], markersize=5, **_style(index))
            for index in range(len(series))
        ]
        figure.legend(
            handles,
            list(series),
            loc="outside lower center",
            ncols=min(len(series), 9),
            frameon=False,
        )
        figure.suptitle(
            f"{group.title}: risk during training (median, band: quartiles of runs)"
        )
    return figure


def study_figures(study: Study) -> list[Drawn]:
    """Every figure of a study, with titles and captions for the report."""
    drawn = []
    for group in groups(study.records):
        axis = group.axis
        cells = len(group.records)
        drawn.append(
            Drawn(
                f"{group.name}-probability",
                f"{group.title}: non-convergence against {axis}",
                (
                    f"Fraction of runs certified not to converge (a certified "
                    f"inactive neuron at initialization implies a risk gap) and "
                    f"observed not to converge (final risk above the tolerance), "
                    f"with 95% Clopper-Pearson intervals, {cells} cells. "
                    + (
                        "The black curve is the theory's 1-(1-p)^l1; on the log "
                        "scale of 1 - P it is a line of slope log(1-p)."
                        if axis == "width"
                        else "Against depth, certified non-convergence comes "
                        "from collapsed networks: some hidden layer is inactive "
                        "on the whole domain."
                    )
                ),
                probability_figure(group, study.rates),
            )
        )
        drawn.append(
            Drawn(
                f"{group.name}-final-risk",
                f"{group.title}: final risks",
                "Final risk of every run (log scale, one range for all panels; "
                "lower risks are counted in the first bin), stacked by its number "
                "of certified inactive neurons at initialization. The dotted line "
                "is the tolerance; dashed lines, where shown, are the risk levels "
                "R_k.",
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
                "Risk at log-spaced checkpoints: median over the runs of each "
                "optimizer, band from the first to the third quartile.",
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
