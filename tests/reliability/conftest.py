"""Reliability fixtures: a finished small grid to protect, and a writable copy of the data root."""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from xlcore.config import make_config
from xlcore.grid import Grid, run_grid
from xlcore.paths import SAMPLE_ROOT

# The smallest grid with a trained model: POS fine-tuning (baseline) and its evaluation.
SMALL = {
    "tasks": ["pos"],
    "regimes": ["baseline"],
    "pairs": ["en-de"],
    "tgt_langs": ["de"],
    "analyses": [],
}
LOCKS = (".lock", ".grid.lock")


def run_files(root: Path) -> dict[str, bytes]:
    """Every file below a runs directory (lock files aside) as ``{relative path: bytes}``."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in LOCKS
    }


def complete_runs(root: Path) -> set[str]:
    """``kind/name`` of every run directory holding a completion marker."""
    return {p.parent.relative_to(root).as_posix() for p in root.glob("*/*/complete.json")}


def cli_grid(runs: Path, overrides: dict[str, str], **popen) -> subprocess.Popen:
    """``python -m xlcore.cli grid --profile smoke --quiet`` on ``runs`` in its own session."""
    cmd = [sys.executable, "-m", "xlcore.cli", "grid", "--profile", "smoke", "--quiet"]
    cmd += ["--runs", str(runs)]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={value}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        **popen,
    )


@pytest.fixture(scope="session")
def runs_probe() -> SimpleNamespace:
    """The helpers above, for test modules: ``files``, ``complete`` and ``cli``."""
    return SimpleNamespace(files=run_files, complete=complete_runs, cli=cli_grid)


@dataclass
class Workspace:
    """A data root copied from the sample corpus and a runs directory holding a finished grid."""

    data: Path
    runs: Path

    def config(self, **overrides):
        return make_config("smoke", {**SMALL, "data": str(self.data), **overrides})

    def grid(self, **overrides) -> Grid:
        return run_grid(self.config(**overrides), root=self.runs, progress=False)


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory) -> Path:
    """A runs directory where the SMALL grid (fine-tune + evaluate) has finished."""
    root = tmp_path_factory.mktemp("finished") / "runs"
    grid = run_grid(make_config("smoke", SMALL), root=root, progress=False)
    assert len(grid.steps) == 2 and all(s.run.complete for s in grid.steps)
    return root


@pytest.fixture
def workspace(tmp_path, finished_runs) -> Workspace:
    """Fresh copies of the sample data root and of the finished runs, for one test to damage.

    The copy of the data root has the layout of ../shared/data and the same file checksums as the
    sample, so the SMALL grid on it reuses the finished runs (run keys hash the data).
    """
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_ROOT, data)
    runs = tmp_path / "runs"
    shutil.copytree(finished_runs, runs)
    return Workspace(data, runs)
