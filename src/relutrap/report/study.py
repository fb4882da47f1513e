"""A stored study as the report reads it: spec, versions, summary and runs.

Everything the figures and the page show comes from here, read once from the store of
an output directory; nothing is recomputed but the summary of
:func:`relutrap.analysis.summarize`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from relutrap.analysis import rates, summarize
from relutrap.store import open_for_reading


@dataclass(frozen=True)
class Study:
    """What a study's output directory holds.

    Attributes:
        directory: the output directory.
        spec: the stored spec (canonical JSON as a dict).
        versions: package name -> version, as recorded when the study began.
        created: when the study began (ISO 8601).
        records: one summary record per cell with runs, in grid order (see
            :func:`relutrap.analysis.summarize_cell`).
        runs: cell identity -> its runs, in run order; each run a dict with the
            store's columns, ``census`` and ``checkpoint_risk`` decoded (census:
            field -> per-hidden-layer counts; checkpoint risk: one risk or ``None``
            per checkpoint).
        checkpoint_steps: cell identity -> the steps at which risks were recorded.
        rates: fits of ``log(1 - P)`` along the width and the depth (see
            :func:`relutrap.analysis.rates`).
    """

    directory: Path
    spec: dict
    versions: dict[str, str]
    created: str
    records: list[dict]
    runs: dict[str, list[dict]]
    checkpoint_steps: dict[str, list[int]]
    rates: list[dict] = dataclasses.field(default_factory=list)


def _decoded(run: dict) -> dict:
    return {
        **run,
        "census": json.loads(run["census"]),
        "checkpoint_risk": json.loads(run["checkpoint_risk"]),
    }


def load_study(directory: str | Path) -> Study:
    """Read a study's output directory.

    Raises:
        relutrap.store.StoreError: ``directory`` holds no relutrap results.
    """
    with open_for_reading(directory) as store:
        experiment = store.experiment()
        records = summarize(store)
        runs = {
            record["cell"]: [_decoded(run) for run in store.runs(record["cell"])]
            for record in records
        }
        steps = {
            stored["cell"]: json.loads(stored["checkpoint_steps"])
            for stored in store.cells()
        }
    versions = {
        key.removeprefix("version."): value
        for key, value in experiment.items()
        if key.startswith("version.")
    }
    return Study(
        directory=Path(directory),
        spec=json.loads(experiment["spec"]),
        versions=versions,
        created=experiment.get("created", ""),
        records=records,
        runs=runs,
        checkpoint_steps=steps,
        rates=rates(records),
    )
