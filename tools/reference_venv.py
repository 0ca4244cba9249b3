"""Builds .venv-reference/: the reference `sssn` 0.1.1 in a venv of its own, for the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-reference"
# The release whose stores `sssn-server import-reference` reads, as bench/run.py pins it.
PACKAGES = ["sssn[server]==0.1.1"]
_MARKER = ".installed"


def ensure(venv: Path = VENV, packages: list[str] = PACKAGES) -> Path:
    """The venv's python, installed first where missing or when the packages
    changed; CalledProcessError (or OSError) when pip cannot install them."""
    python = venv / "bin" / "python"
    marker = venv / _MARKER
    wanted = "\n".join(packages) + "\n"
    if not marker.exists() or marker.read_text() != wanted:
        marker.unlink(missing_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *packages], check=True)
        marker.write_text(wanted)
    # Touched even when nothing changed: make compares its time with this file's.
    marker.touch()
    return python


if __name__ == "__main__":
    print(ensure())
