"""Executing an experiment: cells, chunks of runs, the store.

The local backend trains the chunks one after the other in this process.  Every chunk
is stored in one transaction; on a second call with the same spec and output, chunks
already stored are skipped and a chunk that was in flight when a process died is
computed again, so no run is lost or stored twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from relutrap import engine, optimizers
from relutrap.experiment import ExperimentSpec, SpecError, cells, chunks
from relutrap.problems import optimal_risk
from relutrap.store import open_for_writing


def total_runs(spec: ExperimentSpec) -> int:
    """The number of runs the experiment asks for."""
    return sum(runs for _, runs in cells(spec))


def custom_transforms(spec: ExperimentSpec, custom: dict | None) -> dict:
    """The given transforms by the full names of the cells that use them; raise
    :class:`SpecError` for a ``custom:`` name without one."""
    custom = custom or {}
    named = {}
    for cell, _ in cells(spec):
        if cell.optimizer.startswith(optimizers.CUSTOM_PREFIX):
            name = cell.optimizer.removeprefix(optimizers.CUSTOM_PREFIX)
            if name not in custom:
                raise SpecError(
                    f"optimizer {cell.optimizer}: no transform named {name!r} given"
                )
            named[cell.optimizer] = custom[name]
    return named


def run_experiment(
    spec: ExperimentSpec,
    directory: str | Path,
    on_progress: Callable[[int, str], None] | None = None,
    custom: dict | None = None,
) -> None:
    """Train every run of ``spec`` not yet in the store at ``directory``.

    Args:
        on_progress: called with the number of runs just finished (or found already
            stored) and the label of their cell.
        custom: the optimizers named ``custom:<name>`` in the spec, by name: optax
            ``GradientTransformation``s or :class:`relutrap.optimizers.Method`s.
    """
    planned = cells(spec)
    transforms = custom_transforms(spec, custom)
    variances = [engine.target_variance(cell) for cell, _ in planned]
    report = on_progress or (lambda count, label: None)
    with open_for_writing(directory) as store:
        store.begin(spec.model_dump(mode="json"))
        for position, ((cell, runs), variance) in enumerate(zip(planned, variances)):
            store.add_cell(
                cell,
                position,
                runs,
                engine.checkpoint_steps(cell.steps, cell.checkpoints),
                optimal_risk(cell.problem, cell.architecture),
                variance,
            )
        for (cell, runs), variance in zip(planned, variances):
            stored = store.stored_runs(cell)
            size = engine.runs_per_chunk(
                cell, spec.chunk_size, spec.memory_budget_mb * 2**20
            )
            for chunk in chunks(runs, size):
                missing = [index for index in chunk if index not in stored]
                if missing:
                    outcomes = engine.train_runs(
                        cell, spec.seed, missing, transforms.get(cell.optimizer)
                    )
                    store.add_runs(
                        cell,
                        outcomes,
                        engine.certified_nonconvergent(cell, outcomes),
                        engine.observed_nonconvergent(cell, outcomes, variance),
                    )
                report(len(chunk), cell.label())
