"""The ``relutrap`` command line: run studies and summarize them."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
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
    console.print(
        f"{parsed.name}: {len(backends.cells(parsed))} cells, {total:,} runs in "
        f"{len(chunks):,} chunks of up to {largest:,} runs (memory budget "
        f"{parsed.memory_budget_mb:,} MB), backend {backend.value}",
        highlight=False,
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs  {task.fields[rate]}  {task.fields[remaining]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(parsed.name, total=total, rate="", remaining="")
        started = time.monotonic()
        trained = 0

        def advance(count: int, label: str, computed: bool) -> None:
            nonlocal trained
            progress.advance(task, count)
            done = progress.tasks[task].completed
            if not computed:
                progress.update(task, description=label)
                if not console.is_terminal:
                    console.print(
                        f"{done:.0f}/{total} runs  ({count} already stored)  {label}",
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

        try:
            backends.run_experiment(
                parsed,
                out,
                advance,
                backend=backend.value,
                address=address,
                extend=extend,
                workers=workers,
            )
        except (StoreError, SpecError) as error:
            _fail(str(error))
        except backends.BackendError as error:
            _fail(str(error), code=1)
        progress.update(task, description=parsed.name)
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
            "init; theory: 1-(1-p)^l1.  NC: non-convergent, certified from the census "
            "at init or observed from the final risk.  conv. w/o dead: runs that "
            "converged among those without any certified inactive neuron.  A run "
            "converged when (risk - optimal risk) / Var f(X) <= tol; on a data set "
            "(marked 'vs best') the reference is the best run's final risk, not the "
            "unknown optimal empirical risk.  < level: runs of a shallow ReLU cell "
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
        "certified NC",
        "observed NC",
        "collapsed",
        "revived",
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
            + ("" if record["p_method"] == "exact" else " (MC)"),
            _interval(record["certified_nonconvergent"]),
            _interval(record["observed_nonconvergent"])
            + (" vs best" if record.get("reference") == "best run" else ""),
            _interval(record["collapsed"]),
            str(record["revived"]),
            "n/a" if converged is None else f"{converged}/{healthy}",
            "n/a" if relative is None else f"{relative:.1e}",
            "n/a" if not record.get("levels") else str(record["levels"]["below"]),
            f"{record['tolerance']:g}",
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
    from relutrap.analysis import flatten
    from relutrap.api import summary as read_summary
    from relutrap.experiment import SpecError
    from relutrap.store import StoreError

    try:
        records = read_summary(directory)
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
        json.dump(records, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif format is Format.csv:
        rows = [flatten(record) for record in records]
        columns = list(dict.fromkeys(key for row in rows for key in row))
        writer = csv.DictWriter(sys.stdout, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    else:
        Console(width=max(Console().width, 210)).print(_table(records))
    incomplete = [r for r in records if r["runs"] < r["planned_runs"]]
    if incomplete or not records:
        console.print(
            f"[bold yellow]warning:[/] the study in {directory} is incomplete: "
            f"{len(incomplete)} cell(s) hold fewer runs than planned; run it again "
            "with the same spec to finish it"
            if records
            else f"[bold yellow]warning:[/] no run of {directory} has finished yet"
        )


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
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
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
    Console(width=max(Console().width, 160)).print(table)


def main():
    app()


class LevelMethod(StrEnum):
    auto = "auto"
    both = "both"
    free_knot = "free-knot"
    training = "training"


def _parse_numbers(text: str, option: str, kind=float) -> list:
    try:
        return [kind(item) for item in text.split(",")]
    except ValueError:
        _fail(f"{option}: expected comma-separated numbers, got {text!r}")


@app.command()
def levels(
    arch: Annotated[
        str, typer.Option("--arch", help="Shallow architecture d,l1,1, e.g. 1,4,1.")
    ] = "1,4,1",
    target: Annotated[
        str, typer.Option(help="teacher, square, sin or constant.")
    ] = "teacher",
    domain: Annotated[
        str, typer.Option(help="The box [low, high]^d as low,high.")
    ] = "0,1",
    teacher_width: Annotated[
        int, typer.Option(help="Teacher width; 0: the student's l1.")
    ] = 0,
    teacher_seed: Annotated[int, typer.Option(help="Seed of the teacher.")] = 0,
    frequency: Annotated[float, typer.Option(help="Cycles per unit (sin).")] = 1.0,
    value: Annotated[float, typer.Option(help="Value of a constant target.")] = 1.0,
    evaluation_size: Annotated[
        int, typer.Option(help="Inputs of the risk's estimator.")
    ] = 1024,
    method: Annotated[
        LevelMethod,
        typer.Option(help="auto: free-knot in 1D, training otherwise; both: compare."),
    ] = LevelMethod.auto,
    starts: Annotated[int, typer.Option(help="Random starts per level.")] = 12,
    steps: Annotated[
        int, typer.Option(help="Adam steps of the training solver.")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the random starts.")] = 0,
    perturbations: Annotated[
        int, typer.Option(help="Random perturbations per verification.")
    ] = 2000,
    format: Annotated[
        Format, typer.Option("--format", help="Output format (table or json).")
    ] = Format.table,
):
    """Print the risk levels R_0 >= ... >= R_l1 of a shallow architecture (the best
    risk with k live first-layer neurons) and verify the local minimizer of each."""
    from relutrap.experiment import SpecError, parse_spec
    from relutrap.levels import local_minimizer, risk_levels, verify_minimizer

    widths = _parse_numbers(arch, "--arch", int)
    if len(widths) != 3 or widths[2] != 1 or min(widths) < 1:
        _fail(f"--arch: a shallow architecture d,l1,1 is needed, got {arch!r}")
    if starts < 1 or steps < 1 or perturbations < 1:
        _fail("--starts, --steps and --perturbations must be at least 1")
    if format is Format.csv:
        _fail("--format: levels prints a table or json")
    problem_spec = {
        "dimension": widths[0],
        "domain": _parse_numbers(domain, "--domain"),
        "target": target,
        "teacher_width": teacher_width,
        "teacher_seed": teacher_seed,
        "frequency": frequency,
        "value": value,
        "evaluation_size": evaluation_size,
    }
    options = {
        "dimension": "--arch",
        "domain": "--domain",
        "target": "--target",
        "teacher_width": "--teacher-width",
        "teacher_seed": "--teacher-seed",
        "frequency": "--frequency",
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
    if method in (LevelMethod.both, LevelMethod.free_knot) and widths[0] != 1:
        _fail("--method: the free-knot solver needs dimension 1")

    found = risk_levels(problem, tuple(widths), method.value, starts, steps, seed)
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
        json.dump(record, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
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
            "perturbations (<= 0: none decreased it)."
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
            f"{check['largest_decrease']:.1e}",
            "yes" if check["passed"] else "NO",
        )
    Console(width=max(Console().width, 160)).print(table)
