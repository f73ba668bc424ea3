"""Shared test fixtures: offline hub, and the real data root when it is present."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One run at a time unless a test asks for more (grids started as subprocesses inherit this).
os.environ["XLCORE_JOBS"] = "1"

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """``$XLCORE_DATA`` if set, else ``../shared/data`` beside the repository, else None."""
    env = os.environ.get("XLCORE_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if (path / "ud").is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data root; tests that need it are skipped (with the reason) when it is absent."""
    root = shared_data_root()
    if root is None:
        pytest.skip("real data not found: set XLCORE_DATA or place it at ../shared/data")
    return root
