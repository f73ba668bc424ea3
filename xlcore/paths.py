"""Every filesystem location xlcore uses, each with one environment override.

- ``XLCORE_DATA``: the data root (layout of ``../shared/data``: ud/, sib200/, tatoeba/, parallel/).
- ``XLCORE_CACHE``: downloads, converted encoders and word-pair caches
  (default: the platform's user cache folder, ``…/xlalign``).
- ``XLCORE_RUNS``: run directories (default: ``./runs`` below the current directory).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent  # the repository (book, config) in a source checkout
SAMPLE_ROOT = PACKAGE_DIR / "sample"


def cache_dir() -> Path:
    """Root of xlcore's caches (downloads, converted models, word pairs)."""
    env = os.environ.get("XLCORE_CACHE")
    path = Path(env) if env else Path(platformdirs.user_cache_dir("xlalign"))
    return path.expanduser().resolve()


def download_root() -> Path:
    """Where ``xlcore data fetch`` puts data when no other root is given."""
    return cache_dir() / "data"


def runs_dir() -> Path:
    """Root of all run directories."""
    env = os.environ.get("XLCORE_RUNS")
    return (Path(env) if env else Path.cwd() / "runs").expanduser().resolve()


def env_data_root() -> Path | None:
    """The data root named by ``XLCORE_DATA``, or None when unset."""
    env = os.environ.get("XLCORE_DATA")
    return Path(env).expanduser().resolve() if env else None
