"""The ``relutrap`` command line: run studies, summarize them and report on them."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Measure how often SGD-type optimizers fail to train ReLU networks, and why.",
)
console = Console(stderr=True, soft_wrap=True)

SPEC_ERROR = 2


class Backend(StrEnum):
    local = "local"
    ray = "ray"


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class BoundFormat(StrEnum):
    table = "table"
    json = "json"


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the stored chunks stay, the one in flight is
    dropped (its write is one transaction)."""

    signal = signal.SIGTERM


def _terminated(signum, frame):
    raise Terminated


def _print_whole(*tables) -> None:
    """Print tables to stdout at the width they need, never cut to the terminal's
    (or, when stdout is not a terminal, to rich's default of 80 columns)."""
    probe = Console(width=100_000)
    for table in tables:
        needed = Measurement.get(probe, probe.options, table).maximum
        Console(width=max(Console().width, needed)).print(table)


def _fail(message: str, code: int = SPEC_ERROR):
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _use_compilation_cache() -> None:
    """Keep compiled training loops on disk so repeated studies start at once."""
    import jax

    root = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    try:
        jax.config.update(
            "jax_compilation_cache_dir", str(Path(root) / "relutrap" / "jax")
        )
    except Exception:  # an older JAX without a persistent cache: compile every time
        pass


@app.command()
def run(
    spec: Annotated[
        Path | None,
        typer.Argument(help="TOML spec; without it, the built-in default study."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path(
        "results/default"
    ),
    runs: Annotated[
        int | None, typer.Option(help="Runs per cell, overriding the spec.")
    ] = None,
    backend: Annotated[
        Backend, typer.Option(help="Where the runs train: here, or on a Ray cluster.")
    ] = Backend.local,
    address: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of a Ray cluster; without it a local one is started."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="CPUs of the local Ray cluster (default: all)."),
    ] = None,
    extend: Annotated[
        bool,
        typer.Option(
            help="Accept a spec that adds runs or cells to the study in --out."
        ),
    ] = False,
):
    """Run a study; running it again on the same output resumes it."""
    from relutrap import backends
    from relutrap.experiment import SpecError, load_spec, with_runs
    from relutrap.store import StoreError

    try:
        parsed = load_spec(spec)
        if runs is not None:
            parsed = with_runs(parsed, runs)
    except SpecError as error:
        _fail(str(error))
    if backend is Backend.ray:
        try:
            backends.require_ray()
        except backends.BackendError as error:
            _fail(str(error))
    elif address is not None or workers is not None:
        _fail("--address and --workers apply to --backend ray only")

    _use_compilation_cache()
    chunks, _ = backends.plan(parsed)
    total = backends.total_runs(parsed)
    largest = max((chunk.planned for chunk in chunks), default=0)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs  {task.fields[rate]}  {task.fields[remaining]}"),
        TimeElapsedColumn(),
    )
    progress = Progress(*columns, console=console, transient=False)
    task = None
    started = time.monotonic()
    trained = 0

    def start() -> None:
        # Called once the output, the spec and the backend have passed their
        # checks: a refused study prints its error alone.
        nonlocal task, started
        console.print(
            f"{parsed.name}: {len(backends.cells(parsed))} cells, {total:,} runs in "
            f"{len(chunks):,} chunks of up to {largest:,} runs (memory budget "
            f"{parsed.memory_budget_mb:,} MB), backend {backend.value}",
            highlight=False,
        )
        if console.is_terminal:
            progress.start()
        task = progress.add_task(parsed.name, total=total, rate="", remaining="")
        started = time.monotonic()

    def advance(count: int, label: str, computed: bool) -> None:
        nonlocal trained
        progress.advance(task, count)
        done = progress.tasks[task].completed
        if not computed:
            progress.update(task, description=label)
            if not console.is_terminal:
                console.print(
                    f"{done:.0f}/{total} runs  ({count} of this cell already "
                    f"stored)  {label}",
                    highlight=False,
                )
            return
        trained += count
        rate, remaining = _speed(trained, time.monotonic() - started, total - done)
        progress.update(task, rate=rate, remaining=remaining, description=label)
        if not console.is_terminal:
            console.print(
                f"{done:.0f}/{total} runs  {rate}  {remaining}  {label}",
                highlight=False,
            )

    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        backends.run_experiment(
            parsed,
            out,
            advance,
            backend=backend.value,
            address=address,
            extend=extend,
            workers=workers,
            on_start=start,
        )
        progress.update(task, description=parsed.name)
    except (StoreError, SpecError) as error:
        _fail(str(error))
    except backends.BackendError as error:
        _fail(str(error), code=1)
    except KeyboardInterrupt as stop:
        if progress.live.is_started:
            progress.stop()
        console.print(
            f"interrupted: the chunks stored in {out} are kept; run the same "
            "command again to resume",
            highlight=False,
        )
        raise typer.Exit(128 + getattr(stop, "signal", signal.SIGINT)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        # (Stopping a bar never started would print an empty line.)
        if progress.live.is_started:
            progress.stop()
    console.print(f"results in {out}; see [bold]relutrap summary {out}[/]")


def _speed(trained: int, seconds: float, left: float) -> tuple[str, str]:
    """Runs per second over the runs trained now, and the time the ``left`` runs
    will take at that rate."""
    if seconds <= 0 or trained <= 0:
        return "", ""
    rate = trained / seconds
    left_seconds = round(left / rate)
    hours, rest = divmod(left_seconds, 3600)
    return f"{rate:,.1f}/s", f"{hours}:{rest // 60:02d}:{rest % 60:02d} left"


def _interval(entry: dict | None) -> str:
    if entry is None or entry["fraction"] is None:
        return "n/a"
    return f"{entry['fraction']:.2f} ({entry['low']:.2f}-{entry['high']:.2f})"


def _architecture(widths: list[int]) -> str:
    """``1-8-1``, or ``1-2(x16)-1`` for many hidden layers of one width."""
    hidden = widths[1:-1]
    if len(hidden) > 2 and len(set(hidden)) == 1:
        return f"{widths[0]}-{hidden[0]}(x{len(hidden)})-{widths[-1]}"
    return "-".join(str(width) for width in widths)


def _table(records: list[dict]) -> Table:
    table = Table(
        title="Non-convergence per cell (95% Clopper-Pearson intervals)",
        caption=(
            "P(dead L1): runs with >= 1 certified inactive first-layer neuron at "
            "init; theory: 1-(1-p)^l1.  dead any: runs with >= 1 certified inactive "
            "neuron in any layer (theory: 1-prod_k (1-p_k)^l_k).  NC: non-convergent, "
            "certified from the census at init or observed from the final risk.  "
            "conv. w/o dead: runs that converged among those without any certified "
            "inactive neuron.  A run converged when (risk - optimal risk) / Var f(X) "
            "<= tol; on a data set (marked 'vs best') the reference is the best run's "
            "final risk, not the unknown optimal empirical risk.  IBP revived: "
            "neurons proven inactive at init by interval bounds only that were "
            "active later / all such neurons.  < level: runs of a shallow ReLU cell "
            "that ended below the risk level R_(l1-j) their j certified inactive "
            "neurons allow (0 unless a level was not found)."
        ),
    )
    # Factors a study varies besides the ones always shown get a column too.
    varied = [
        (key, title)
        for key, title in (("init", "init"), ("batch_size", "batch"))
        if len({record[key] for record in records}) > 1
    ]
    for name in (
        "part",
        "arch.",
        *(title for _, title in varied),
        "optimizer",
        "lr",
        "steps",
        "runs",
        "P(dead L1)",
        "theory",
        "dead any (theory)",
        "certified NC",
        "observed NC",
        "collapsed",
        "revived",
        "IBP revived",
        "conv. w/o dead",
        "med. rel. risk",
        "< level",
        "tol.",
    ):
        table.add_column(
            name, justify="left" if name in ("part", "optimizer") else "right"
        )
    for record in records:
        optimizer = record["optimizer"]
        if record["convention"] not in ("book", None):
            optimizer += f" ({record['convention']})"
        if record["schedule"]["kind"] != "constant":
            optimizer += f" {record['schedule']['kind']}"
        if record.get("activation", "relu") != "relu":
            optimizer += f" [{record['activation']}]"
        converged = record["converged_without_certified_inactive"]
        healthy = record["without_certified_inactive"]
        relative = record["median_relative_risk"]
        table.add_row(
            record["part"],
            _architecture(record["architecture"]),
            *(str(record[key]) for key, _ in varied),
            optimizer
            + {True: "", False: " (!)", None: " (?)"}[record["premise_holds"]],
            f"{record['learning_rate']:g}",
            str(record["steps"]),
            str(record["runs"]),
            _interval(record["some_first_layer_inactive"]),
            f"{record['theory_some_first_layer_inactive']:.3f}"
            + ("" if record["p_method"] == "exact" else " (est.)"),
            _with_theory(
                record["some_certified_inactive"],
                record["theory_some_certified_inactive"],
            ),
            _interval(record["certified_nonconvergent"]),
            _interval(record["observed_nonconvergent"])
            + (" vs best" if record.get("reference") == "best run" else ""),
            _interval(record["collapsed"]),
            str(record["revived"]),
            _bounded_revived(record),
            "n/a" if converged is None else f"{converged}/{healthy}",
            "n/a" if relative is None else f"{relative:.1e}",
            "n/a" if not record.get("levels") else str(record["levels"]["below"]),
            f"{record['tolerance']:g}",
        )
    return table


def _with_theory(entry: dict, theory: float) -> str:
    measured = "n/a" if entry["fraction"] is None else f"{entry['fraction']:.2f}"
    return f"{measured} ({theory:.3f})"


def _bounded_revived(record: dict) -> str:
    revived = record.get("bounded_revived")
    if revived is None:
        return "n/a"
    return f"{revived}/{record['bounded_only_init']}"


def _slope(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _varying(fits: list[dict]) -> list[str]:
    """The held-fixed factors, besides part, optimizer and learning rate, that
    differ between fits: the ones a reader needs to tell the rows apart."""
    shown = {"part", "optimizer", "learning_rate"}
    names = dict.fromkeys(name for fit in fits for name in fit["held_fixed"])

    def values(name: str) -> set[str]:
        return {json.dumps(fit["held_fixed"].get(name), sort_keys=True) for fit in fits}

    return [name for name in names if name not in shown and len(values(name)) > 1]


def _factor(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in value.items())
    return str(value)


def _rates_table(fits: list[dict], partial: bool = False) -> Table:
    varying = _varying(fits)
    table = Table(
        title="Rates: log(1 - P) against width or depth (95% profile-likelihood "
        "intervals)",
        caption=(
            "measured: binomial maximum-likelihood slope of log(1 - P) = a + b x; "
            "theory: slope of log(1 - P) through the same positions from the exact "
            "certified probabilities (width: 1-(1-p)^l1, log(1-p) per neuron; depth: "
            "some certified neuron, or certified collapse).  n/a: not identified.  "
            "Each fit holds every other factor of its cells fixed."
            + (
                "  The study is incomplete: these fits use a partial grid."
                if partial
                else ""
            )
        ),
    )
    for name in ("part", "optimizer", "lr", *varying, "axis", "fixed", "positions"):
        table.add_column(name.replace("_", " "))
    table.add_column("event")
    for name in ("measured slope", "interval", "theory slope"):
        table.add_column(name, justify="right")
    for fit in fits:
        ((fixed_name, fixed_value),) = fit["fixed"].items()
        interval = (
            f"{_slope(fit['low'])} to {_slope(fit['high'])}"
            if fit["slope"] is not None
            else "n/a"
        )
        table.add_row(
            fit["part"],
            fit["optimizer"],
            f"{fit['learning_rate']:g}",
            *(_factor(fit["held_fixed"].get(name)) for name in varying),
            fit["axis"],
            f"{fixed_name} {fixed_value}",
            ",".join(str(x) for x in fit["positions"]),
            fit["event"].replace("_", " "),
            _slope(fit["slope"]),
            interval,
            _slope(fit["theory_slope"]),
        )
    return table


@app.command()
def summary(
    directory: Annotated[Path, typer.Argument(help="A study's output directory.")],
    format: Annotated[
        Format, typer.Option("--format", help="Output format.")
    ] = Format.table,
):
    """Print the per-cell analysis of a study (JSON is the stable, scriptable form)."""
    from relutrap.analysis import completeness, rates
    from relutrap.api import summary as read_summary
    from relutrap.experiment import SpecError
    from relutrap.store import StoreError, being_written, open_for_reading

    try:
        records = read_summary(directory)
        with open_for_reading(directory) as store:
            incomplete = completeness(store)
    except (StoreError, SpecError) as error:
        _fail(str(error))
    for record in records:
        if not record.get("inactivity_premise", True):
            console.print(
                f"[bold yellow]note:[/] cell {record['part']} "
                f"{_architecture(record['architecture'])} uses {record['activation']}: "
                "no neuron is ever inactive, so the theorem's premise does not hold "
                "and its certificates count 0",
                highlight=False,
            )
        if record.get("levels") and record["levels"]["below"]:
            console.print(
                f"[bold yellow]warning:[/] cell {record['part']} "
                f"{_architecture(record['architecture'])} {record['optimizer']}: "
                f"{record['levels']['below']} run(s) ended below the risk level "
                "their certified inactive neurons allow: a level was not found",
                highlight=False,
            )
        if record.get("diverged"):
            console.print(
                f"[bold yellow]note:[/] cell {record['part']} "
                f"{_architecture(record['architecture'])} {record['optimizer']} "
                f"lr={record['learning_rate']:g}: {record['diverged']} of "
                f"{record['runs']} runs diverged (non-finite loss; the step is "
                "stored per run) and count as not converged",
                highlight=False,
            )
        if record["premise_holds"] is False:
            console.print(
                f"[bold yellow]warning:[/] cell {record['part']} "
                f"{_architecture(record['architecture'])} "
                f"{record['optimizer']}: the optimizer moves "
                "coordinates whose gradient is always 0, so the theorem's premise "
                "does not hold for this cell",
                highlight=False,
            )
    if format is Format.json:
        _print_json(
            {"cells": records, "rates": rates(records), "incomplete": incomplete}
        )
    elif format is Format.csv:
        _write_csv(records)
    else:
        fits = rates(records)
        _print_whole(
            _table(records),
            *([_rates_table(fits, partial=incomplete is not None)] if fits else []),
        )
    if not records:
        console.print(
            f"[bold yellow]warning:[/] no run of {directory} has finished yet"
        )
    elif incomplete is not None:
        not_started = incomplete["cells_not_started"]
        console.print(
            f"[bold yellow]warning:[/] the study in {directory} is incomplete: "
            f"{incomplete['runs_stored']} of {incomplete['runs_planned']} runs "
            f"stored, {len(not_started)} cells not started, "
            f"{len(incomplete['cells_unfinished'])} unfinished; the rate fits use a "
            "partial grid; "
            + (
                "another process is writing to it now"
                if being_written(directory)
                else "run it again with the same spec to finish it"
            )
            + (f" (not started: {', '.join(not_started)})" if not_started else ""),
            highlight=False,
        )


@app.command()
def report(
    directory: Annotated[Path, typer.Argument(help="A study's output directory.")],
    out: Annotated[
        Path | None,
        typer.Option(help="The HTML page to write; DIR/report.html by default."),
    ] = None,
    formats: Annotated[
        str,
        typer.Option(
            "--formats", help="Figure files to write into DIR/figures: png, svg, pdf."
        ),
    ] = "png,svg",
):
    """Write a study's figures and one self-contained HTML page about it."""
    from relutrap.report import write_report
    from relutrap.store import StoreError

    chosen = [name.strip().lower() for name in formats.split(",") if name.strip()]
    if out is not None and out.is_dir():
        _fail(f"--out: {out} is a directory; give the HTML file to write")
    try:
        page, written = write_report(directory, out, chosen)
    except StoreError as error:
        _fail(str(error))
    except ValueError as error:
        _fail(f"--formats: {error}")
    except OSError as error:
        _fail(f"cannot write the report: {error}", code=1)
    console.print(
        f"report in {page}; {len(written)} figure files in {directory / 'figures'}"
    )


class Shape(StrEnum):
    box = "box"
    ball = "ball"
    gaussian = "gaussian"


def _numbers(option: str, text: str, kind=float) -> list:
    try:
        return [kind(item) for item in text.split(",")]
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        _fail(f"{option}: expected comma-separated {what}, got {text!r}")


def _read_points(
    path: Path, inputs: str | None, target: str | None, standardize: bool = False
):
    """The rows of a data file as a finite set of inputs, read as a data set is
    (and standardized as its training set is, if asked), and the names of the
    columns taken."""
    from relutrap import datasets
    from relutrap.domains import FiniteSet

    columns = ()
    if inputs is not None:
        columns = tuple(name.strip() for name in inputs.split(","))
        if not all(columns):
            _fail(f"--inputs: give column names as a,b,...; got {inputs!r}")
    try:
        points, columns = datasets.read_points(path, columns, target or "")
    except datasets.DataError as error:
        _fail(f"--points: {error}")
    if standardize:
        centre, scale = datasets.standardization(points)
        points = (points - centre) / scale
    return FiniteSet.of(points), columns


def _widths(arch: str, shallow: bool = False) -> tuple[int, ...]:
    """The widths of ``--arch``, within the limits of a study's spec
    (:data:`relutrap.experiment.LARGEST_DIMENSION`, ``LARGEST_WIDTH`` and
    ``LARGEST_DEPTH``)."""
    from relutrap.experiment import LARGEST_DEPTH, LARGEST_DIMENSION, LARGEST_WIDTH

    widths = tuple(_numbers("--arch", arch, int))
    form = "d,l1,1 (a shallow architecture)" if shallow else "d,l1,...,lL,1"
    if len(widths) < 3 or widths[-1] != 1 or (shallow and len(widths) != 3):
        _fail(f"--arch: give {form} with output width 1, got {arch}")
    dimension, hidden = widths[0], widths[1:-1]
    if dimension < 1:
        _fail(f"--arch: the input dimension must be at least 1, got {dimension}")
    if min(hidden) < 1:
        _fail(f"--arch: every hidden width must be at least 1, got {min(hidden)}")
    if dimension > LARGEST_DIMENSION:
        _fail(
            f"--arch: the input dimension is at most {LARGEST_DIMENSION} (as for a "
            f"study's box, ball or Gaussian inputs), got {dimension}"
        )
    if len(hidden) > LARGEST_DEPTH:
        _fail(
            f"--arch: at most {LARGEST_DEPTH} hidden layers (as in a study), got "
            f"{len(hidden)}"
        )
    if max(hidden) > LARGEST_WIDTH:
        _fail(
            f"--arch: a hidden width is at most {LARGEST_WIDTH} (as in a study), got "
            f"{max(hidden)}"
        )
    return widths


def _initialization(init: str, bias: str, value: float | None, scale: float | None):
    """The initialization of ``bound``'s options; an option its scheme or bias rule
    does not take is refused."""
    from relutrap.init import BIAS_RULES, SCHEMES, Initialization

    if init not in SCHEMES:
        _fail(f"--init: unknown scheme {init!r}; allowed: {', '.join(SCHEMES)}")
    if bias not in BIAS_RULES:
        _fail(f"--bias: unknown rule {bias!r}; allowed: {', '.join(BIAS_RULES)}")
    if init == "asymmetric":
        given = {
            "--bias": bias != "default",
            "--bias-value": value is not None,
            "--scale": scale is not None,
        }
        for option, present in given.items():
            if present:
                _fail(
                    f"{option}: does not apply to --init asymmetric, which draws "
                    "each neuron's weights and bias together"
                )
    if scale is not None and init != "uniform":
        _fail(f"--scale: does not apply to --init {init}; only uniform takes it")
    if value is not None and bias != "constant":
        _fail(f"--bias-value: does not apply to --bias {bias}; only constant takes it")
    if scale is not None and not (scale > 0 and math.isfinite(scale)):
        _fail(f"--scale: must be a positive number, got {scale}")
    if value is not None and not math.isfinite(value):
        _fail(f"--bias-value: must be finite, got {value}")
    return Initialization(
        init, bias, 0.0 if value is None else value, 1.0 if scale is None else scale
    )


def _finite(value):
    """``value`` with every float that is not finite (NaN, infinities) made
    ``None``, through lists and dicts: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _write_csv(records: list[dict]) -> None:
    """Write records to standard output as CSV, one row each, nested fields spread
    into columns by :func:`relutrap.analysis.flatten`."""
    from relutrap.analysis import flatten

    rows = [flatten(record) for record in records]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(sys.stdout, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)


def _print_json(value) -> None:
    """Write ``value`` as JSON to standard output; a number that is not finite is
    written ``null`` (strict JSON has no NaN or Infinity)."""
    json.dump(_finite(value), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def _probability(p) -> str:
    if p.method == "exact":
        return f"{p.value:.6g}"
    return f"{p.value:.6g} +- {p.standard_error:.1g} ({p.method})"


@app.command()
def bound(
    arch: Annotated[
        str,
        typer.Option(
            "--arch",
            help="Widths d,l1,...,lL,1, e.g. 1,8,1; d at most 64, widths at most "
            "100000, at most 64 hidden layers.",
        ),
    ],
    init: Annotated[str, typer.Option("--init", help="Initialization scheme.")] = (
        "normal"
    ),
    bias: Annotated[
        str, typer.Option("--bias", help="Bias rule: default, zero, same, constant.")
    ] = "default",
    bias_value: Annotated[
        float | None,
        typer.Option("--bias-value", help="Bias of the constant rule [0]."),
    ] = None,
    scale: Annotated[
        float | None,
        typer.Option("--scale", help="Half-width of the uniform scheme [1]."),
    ] = None,
    domain: Annotated[
        str | None, typer.Option("--domain", help="Box [a, b]^d as a,b.")
    ] = None,
    shape: Annotated[Shape, typer.Option("--shape", help="Input law.")] = Shape.box,
    center: Annotated[
        str | None,
        typer.Option(
            "--center", help="Center of a ball or Gaussian: c or c1,..,cd [0]."
        ),
    ] = None,
    radius: Annotated[
        float | None,
        typer.Option(
            "--radius", help="Ball radius, or Gaussian standard deviation [1]."
        ),
    ] = None,
    points: Annotated[
        Path | None,
        typer.Option(
            "--points",
            help="Finite set of inputs: a data file (CSV with a header, .npy, .npz).",
        ),
    ] = None,
    inputs_option: Annotated[
        str | None,
        typer.Option(
            "--inputs",
            help="Columns of --points as a,b,...; default: every numeric column.",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", help="A column of --points to leave out."),
    ] = None,
    standardize: Annotated[
        bool,
        typer.Option(
            "--standardize",
            help=(
                "Centre and scale each column of --points by its mean and standard "
                "deviation, as a study on the file's rows does."
            ),
        ),
    ] = False,
    format: Annotated[
        BoundFormat, typer.Option("--format", help="Output format.")
    ] = BoundFormat.table,
):
    """What the theory guarantees at initialization: the probability that a neuron,
    some neuron, or a whole layer is certified inactive on the input domain."""
    from relutrap.domains import Ball, Box, Gaussian
    from relutrap.theory import bounds

    widths = _widths(arch)
    initialization = _initialization(init, bias, bias_value, scale)
    dimension = widths[0]
    given = {
        "--domain": domain is not None,
        "--center": center is not None,
        "--radius": radius is not None,
        "--inputs": inputs_option is not None,
        "--target": target is not None,
        "--standardize": standardize,
    }
    if points is not None:
        allowed = ("--inputs", "--target", "--standardize")
        if shape is not Shape.box:
            _fail("--shape: give either --points or a --shape, not both")
        chosen = "--points"
    else:
        allowed = ("--domain",) if shape is Shape.box else ("--center", "--radius")
        chosen = f"--shape {shape.value}"
    for option, present in given.items():
        if present and option not in allowed:
            _fail(
                f"{option}: does not apply to {chosen}; it takes {', '.join(allowed)}"
                + (
                    "; --inputs, --target and --standardize go with --points"
                    if points is None
                    and option in ("--inputs", "--target", "--standardize")
                    else ""
                )
            )
    if points is not None:
        inputs, columns = _read_points(points, inputs_option, target, standardize)
        if inputs.dimension != dimension:
            _fail(
                f"--points: {points} has points of dimension {inputs.dimension} "
                f"(columns {', '.join(columns)}), the architecture's input dimension "
                f"is {dimension}; choose the columns with --inputs"
            )
    elif shape is Shape.box:
        low_high = _numbers("--domain", domain or "0,1")
        if len(low_high) != 2 or not low_high[0] < low_high[1]:
            _fail(f"--domain: give a,b with a < b, got {domain}")
        if not all(math.isfinite(value) for value in low_high):
            _fail(f"--domain: must be finite, got {domain}")
        inputs = Box(low_high[0], low_high[1], dimension)
    else:
        center = "0" if center is None else center
        radius = 1.0 if radius is None else radius
        coordinates = _numbers("--center", center)
        if not all(math.isfinite(value) for value in coordinates):
            _fail(f"--center: must be finite, got {center}")
        if len(coordinates) == 1:
            coordinates = coordinates * dimension
        if len(coordinates) != dimension:
            counts = (
                "1 coordinate" if dimension == 1 else f"1 or {dimension} coordinates"
            )
            _fail(f"--center: give {counts}, got {center}")
        if not (radius > 0 and math.isfinite(radius)):
            _fail(f"--radius: must be a positive number, got {radius}")
        law = Ball if shape is Shape.ball else Gaussian
        inputs = law(tuple(coordinates), radius)

    result = bounds(initialization, widths, inputs)
    notes = []
    if isinstance(inputs, Gaussian):
        notes.append(
            "Gaussian inputs have unbounded support: no first-layer neuron with a "
            "non-zero weight vector is inactive on it, so p = 0 for the first layer. "
            "Inactivity on a finite training sample is still certified: give the "
            "sample with --points."
        )
    elif result.layers[0].neuron.value == 0:
        notes.append(
            "p = 0: this initialization has no first-layer neuron inactive on this "
            "domain, so the theorem's premise fails for the first layer."
        )
    if initialization.is_asymmetric and len(widths) > 3:
        notes.append(
            "p_k = 0 beyond the first layer: every neuron of the asymmetric scheme "
            "has one entry of (w, b) drawn from Beta(2, 1), positive, so none "
            "passes the sign test."
        )
    note = " ".join(notes) or None

    if format is BoundFormat.json:
        record = {
            "architecture": list(widths),
            "init": {
                "scheme": init,
                "bias": bias,
                "value": initialization.value,
                "scale": initialization.scale,
                "laws": initialization.describe(widths),
            },
            "domain": inputs.describe(),
            **result.as_record(),
            "note": note,
        }
        _print_json(record)
        return
    table = Table(
        title=f"Certified inactivity at init: {'-'.join(map(str, widths))}, {init}, "
        f"{inputs.describe()}",
        caption=(
            "layer 1: inactive on the domain, b + h(w) <= 0 (support function); "
            "deeper: bias <= 0 and all incoming weights <= 0.  Neurons are "
            "independent, so every line is exact for the certified events and a "
            "lower bound on inactivity and collapse."
        ),
    )
    for name in ("layer", "width", "certificate", "p_k (one neuron)"):
        table.add_column(name, justify="left" if name == "certificate" else "right")
    table.add_column("P(some in layer)", justify="right")
    table.add_column("P(whole layer)", justify="right")
    for layer in result.layers:
        table.add_row(
            str(layer.layer),
            str(layer.width),
            layer.certificate,
            _probability(layer.neuron),
            _probability(layer.some),
            _probability(layer.every),
        )
    table.add_section()
    table.add_row(
        "network", "", "some neuron", "", _probability(result.some_neuron), ""
    )
    table.add_row("network", "", "collapse", "", "", _probability(result.collapse))
    _print_whole(table)
    output = Console(width=max(Console().width, 120))
    for line in initialization.describe(widths):
        output.print(line, highlight=False)
    if note is not None:
        output.print(note, highlight=False)


def _defaults(row: dict) -> str:
    return ", ".join(f"{key}={value:g}" for key, value in row["settings"].items())


@app.command("optimizers")
def list_optimizers(
    format: Annotated[
        Format, typer.Option("--format", help="Output format.")
    ] = Format.table,
):
    """List every method and convention with its update rule, and whether it keeps
    coordinates without gradient fixed (the theorem's premise) in each dtype."""
    from relutrap import optimizers

    dtypes = optimizers.INVARIANCE_DTYPES
    rows = []
    for name, by_convention in optimizers.OPTIMIZERS.items():
        for convention in by_convention:
            method = optimizers.make(name, 0.01, convention)
            premise = {
                dtype: optimizers.zero_gradient_invariance(method, dtype)
                for dtype in optimizers.INVARIANCE_DTYPES
            }
            rows.append(
                {
                    "name": name,
                    "convention": convention,
                    "formula": optimizers.formula(name, convention),
                    "settings": optimizers.hyperparameters(name, convention),
                    "premise_holds": premise,
                }
            )
    if format is Format.json:
        _print_json(rows)
        return
    if format is Format.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["method", "convention", "formula", "defaults", *dtypes])
        for row in rows:
            writer.writerow(
                [row["name"], row["convention"], row["formula"], _defaults(row)]
                + [row["premise_holds"][dtype] for dtype in dtypes]
            )
        return
    table = Table(
        title="Optimizers and conventions",
        caption=(
            "premise: coordinates whose gradients were all exactly 0 keep their value "
            "(default settings, learning rate 0.01)."
        ),
        show_lines=True,
    )
    for column in ("method", "convention", "update rule", "defaults"):
        table.add_column(column)
    for dtype in optimizers.INVARIANCE_DTYPES:
        table.add_column(dtype, justify="center")
    for row in rows:
        table.add_row(
            row["name"],
            row["convention"],
            Text(row["formula"]),
            _defaults(row),
            *("yes" if row["premise_holds"][d] else "NO" for d in dtypes),
        )
    _print_whole(table)


def main():
    app()


class LevelMethod(StrEnum):
    auto = "auto"
    both = "both"
    free_knot = "free-knot"
    training = "training"


# The largest |endpoint| of the box of ``levels``: the solvers and the verification
# work in float64 with squares of the inputs and the targets, and with absolute
# perturbation sizes.
LEVELS_LARGEST_ENDPOINT = 1e6

# The options of ``levels`` that only some targets take.
TARGET_OPTIONS = {
    "--teacher-width": ("teacher",),
    "--teacher-seed": ("teacher",),
    "--frequency": ("sin",),
    "--value": ("constant",),
}


@app.command()
def levels(
    arch: Annotated[
        str,
        typer.Option(
            "--arch",
            help="Shallow architecture d,l1,1, e.g. 1,4,1; d at most 64, l1 at most "
            "64 (free-knot) or 16 (training, both).",
        ),
    ] = "1,4,1",
    target: Annotated[
        str, typer.Option(help="teacher, square, sin or constant.")
    ] = "teacher",
    domain: Annotated[
        str,
        typer.Option(help="The box [low, high]^d as low,high, within [-1e6, 1e6]."),
    ] = "0,1",
    teacher_width: Annotated[
        int | None,
        typer.Option(help="Teacher width (teacher); 0: the student's l1 [0]."),
    ] = None,
    teacher_seed: Annotated[
        int | None, typer.Option(help="Seed of the teacher (teacher) [0].")
    ] = None,
    frequency: Annotated[
        float | None, typer.Option(help="Cycles per unit (sin) [1].")
    ] = None,
    value: Annotated[
        float | None, typer.Option(help="Value of the target (constant) [1].")
    ] = None,
    evaluation_size: Annotated[
        int, typer.Option(help="Inputs of the risk's estimator.")
    ] = 1024,
    method: Annotated[
        LevelMethod,
        typer.Option(help="auto: free-knot in 1D, training otherwise; both: compare."),
    ] = LevelMethod.auto,
    starts: Annotated[int, typer.Option(help="Random starts per level.")] = 12,
    steps: Annotated[
        int,
        typer.Option(help="Adam steps of the training solver (free-knot ignores it)."),
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the random starts.")] = 0,
    perturbations: Annotated[
        int, typer.Option(help="Random perturbations per verification.")
    ] = 2000,
    format: Annotated[
        Format,
        typer.Option("--format", help="Output format; csv: one row per level."),
    ] = Format.table,
):
    """Print the risk levels R_0 >= ... >= R_l1 of a shallow architecture (the best
    risk with k live first-layer neurons) and verify the local minimizer of each."""
    from relutrap.experiment import LARGEST_WIDTH, SpecError, parse_spec
    from relutrap.levels import LARGEST_WIDTH as SOLVABLE_WIDTH
    from relutrap.levels import (
        automatic_solver,
        local_minimizer,
        risk_levels,
        verify_minimizer,
    )

    widths = _widths(arch, shallow=True)
    solver = method.value
    if method is LevelMethod.auto:
        solver = automatic_solver(widths[0])
    if solver in ("both", "free-knot") and widths[0] != 1:
        _fail(f"--method: the free-knot solver needs dimension 1, got {widths[0]}")
    largest = SOLVABLE_WIDTH["training" if solver == "both" else solver]
    if widths[1] > largest:
        _fail(
            f"--arch: the {'training' if solver == 'both' else solver} solver "
            f"computes levels of a first width up to {largest}, got {widths[1]}"
        )
    counts = {"--starts": starts, "--perturbations": perturbations}
    if solver != "free-knot":
        counts["--steps"] = steps
    for option, count in counts.items():
        if count < 1:
            _fail(f"{option}: must be at least 1, got {count}")
    if seed < 0:
        _fail(f"--seed: must be at least 0, got {seed}")
    given = {
        "--teacher-width": teacher_width,
        "--teacher-seed": teacher_seed,
        "--frequency": frequency,
        "--value": value,
    }
    for option, present in given.items():
        if present is not None and target not in TARGET_OPTIONS[option]:
            _fail(
                f"{option}: does not apply to --target {target}; only "
                f"{', '.join(TARGET_OPTIONS[option])} takes it"
            )
    if teacher_width is not None and teacher_width > LARGEST_WIDTH:
        _fail(
            f"--teacher-width: at most {LARGEST_WIDTH} (as in a study), got "
            f"{teacher_width}"
        )
    low_high = _numbers("--domain", domain)
    if len(low_high) != 2 or not all(math.isfinite(end) for end in low_high):
        _fail(f"--domain: give two finite numbers low,high, got {domain}")
    if max(map(abs, low_high)) > LEVELS_LARGEST_ENDPOINT:
        _fail(
            f"--domain: the levels are computed on boxes within "
            f"[-{LEVELS_LARGEST_ENDPOINT:g}, {LEVELS_LARGEST_ENDPOINT:g}], got {domain}"
        )
    problem_spec = {
        "dimension": widths[0],
        "domain": low_high,
        "target": target,
        "teacher_width": 0 if teacher_width is None else teacher_width,
        "teacher_seed": 0 if teacher_seed is None else teacher_seed,
        "frequency": 1.0 if frequency is None else frequency,
        "value": 1.0 if value is None else value,
        "evaluation_size": evaluation_size,
    }
    options = {
        "dimension": "--arch",
        "domain": "--domain",
        "target": "--target",
        "teacher_width": "--teacher-width",
        "teacher_seed": "--teacher-seed",
        "frequency": "--frequency",
        "value": "--value",
        "evaluation_size": "--evaluation-size",
    }
    data = {
        "parts": [
            {
                "name": "levels",
                "width": [widths[1]],
                "problem": problem_spec,
                "optimizers": [{"name": "sgd", "learning_rate": 0.1}],
            }
        ]
    }
    try:
        parsed = parse_spec(data, "levels")
    except SpecError as error:
        message = str(error).replace("levels: ", "")
        message = message.replace("field parts.0.problem: domain", "--domain")
        for field, option in options.items():
            message = message.replace(f"field parts.0.problem.{field}", option)
        _fail(message)
    problem = parsed.parts[0].problem.build()

    found = risk_levels(problem, widths, method.value, starts, steps, seed)
    record = found.as_record()
    for level, row in zip(found.levels, record["levels"]):
        check = verify_minimizer(
            problem,
            found.architecture,
            local_minimizer(found, level.live),
            perturbations=perturbations,
            seed=seed,
        )
        row["verification"] = check.as_record()
    record["problem"] = problem_spec
    if format is Format.json:
        _print_json(record)
    elif format is Format.csv:
        # One row per level, its verification's fields as verification.NAME.
        _write_csv(record["levels"])
    else:
        _print_levels(record)


def _number(value) -> str:
    return "-" if value is None else f"{value:.6g}"


def _print_levels(record: dict) -> None:
    table = Table(
        title=(
            f"Risk levels of {_architecture(record['architecture'])} "
            f"(Var f(X) = {record['variance']:.6g}; risk: {record['risk_method']})"
        ),
        caption=(
            "R_k: best risk with k live first-layer neurons (an upper bound found by "
            "the method named; agreement: |free-knot - training| / Var f(X)).  "
            "Local minimizer: the best k-neuron network padded with inactive neurons; "
            "verified by its gradient norm, the smallest Hessian eigenvalue on the "
            "live coordinates and the largest risk decrease under random "
            "perturbations (<= 0: none decreased it).  'at a kink': a live "
            "neuron's kink sits on an evaluation input, where the risk is not "
            "smooth; there the gradient and Hessian are taken along the moves that "
            "keep it there, and the one-sided derivatives that move it off "
            "(column 'one-sided') must be >= 0."
        ),
    )
    columns = (
        "k",
        "R_k",
        "R_k / Var",
        "method",
        "free-knot",
        "training",
        "agreement",
        "hits",
        "|grad|",
        "min eig.",
        "one-sided",
        "max decrease",
        "verified",
    )
    for name in columns:
        table.add_column(name, justify="left" if name == "method" else "right")
    for row in record["levels"]:
        check = row["verification"]
        table.add_row(
            str(row["live"]),
            _number(row["risk"]),
            _number(row["relative_risk"]),
            row["method"],
            _number(row["free_knot"]),
            _number(row["training"]),
            _number(row["agreement"]),
            f"{row['hits']}/{row['starts']}",
            f"{check['gradient_norm']:.1e}",
            f"{check['smallest_eigenvalue']:.1e}",
            "" if check["one_sided"] is None else f"{check['one_sided']:.1e}",
            f"{check['largest_decrease']:.1e}",
            ("yes" if check["passed"] else "NO")
            + (" (at a kink)" if check["criterion"] == "at a kink" else ""),
        )
    _print_whole(table)
