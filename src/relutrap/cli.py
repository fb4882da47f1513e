"""The ``relutrap`` command line: run studies and summarize them."""

from __future__ import annotations

import csv
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
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


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _fail(message: str, code: int = SPEC_ERROR):
    console.print(f"[bold red]error:[/] {message}", highlight=False)
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
):
    """Run a study; running it again on the same output resumes it."""
    from relutrap.backends import run_experiment, total_runs
    from relutrap.experiment import SpecError, load_spec, with_runs
    from relutrap.store import StoreError

    try:
        parsed = load_spec(spec)
        if runs is not None:
            parsed = with_runs(parsed, runs)
    except SpecError as error:
        _fail(str(error))

    _use_compilation_cache()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs  {task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(parsed.name, total=total_runs(parsed), rate="")

        def advance(count: int, label: str) -> None:
            progress.advance(task, count)
            elapsed = progress.tasks[task].elapsed or 0.0
            done = progress.tasks[task].completed
            rate = f"{done / elapsed:,.0f}/s" if elapsed > 0 else ""
            progress.update(task, rate=rate, description=label)
            if not console.is_terminal:
                total = progress.tasks[task].total
                console.print(f"{done:.0f}/{total:.0f} runs  {rate}  {label}")

        try:
            run_experiment(parsed, out, advance)
        except (StoreError, SpecError) as error:
            _fail(str(error))
        progress.update(task, description=parsed.name)
    console.print(f"results in {out}; see [bold]relutrap summary {out}[/]")


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
            "unknown optimal empirical risk."
        ),
    )
    for name in (
        "part",
        "arch.",
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
        converged = record["converged_without_certified_inactive"]
        healthy = record["without_certified_inactive"]
        relative = record["median_relative_risk"]
        table.add_row(
            record["part"],
            _architecture(record["architecture"]),
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
