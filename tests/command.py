"""Running the installed ``relutrap`` command in a subprocess, with its own
compilation cache and a wide terminal so that tables are not wrapped."""

import os
import subprocess
import sys
from pathlib import Path

RELUTRAP = Path(sys.executable).parent / "relutrap"


def environment(cache: Path, columns: int = 200) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": str(columns)}


def command(*arguments) -> list[str]:
    return [str(RELUTRAP), *map(str, arguments)]


def relutrap(
    *arguments,
    cache: Path,
    cwd: Path | None = None,
    timeout: float = 600,
    columns: int = 200,
) -> subprocess.CompletedProcess:
    """Run ``relutrap ARGUMENTS`` to its end."""
    return subprocess.run(
        command(*arguments),
        capture_output=True,
        text=True,
        env=environment(cache, columns),
        timeout=timeout,
        cwd=cwd,
    )


def start_relutrap(*arguments, cache: Path) -> subprocess.Popen:
    """Start ``relutrap ARGUMENTS`` and return at once."""
    return subprocess.Popen(
        command(*arguments),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(cache),
    )


def run_study(root: Path, toml: str) -> tuple[Path, subprocess.CompletedProcess]:
    """Write ``toml`` as a spec in ``root`` and run it there through the command
    line: (its output directory, the finished process)."""
    spec = root / "spec.toml"
    spec.write_text(toml)
    out = root / "out"
    return out, relutrap("run", spec, "--out", out, cache=root / "cache")
