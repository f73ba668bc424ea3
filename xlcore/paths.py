"""Every filesystem location xlcore uses, each with one environment override.

- ``XLCORE_DATA``: the data root (layout of ``../shared/data``: ud/, sib200/, tatoeba/, parallel/),
  or ``sample`` for the built-in sample corpus.
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
SAMPLE_NAME = "sample"  # XLCORE_DATA / data value that asks for the sample corpus


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
    """The data root named by ``XLCORE_DATA``, or None when unset (or ``sample``)."""
    env = os.environ.get("XLCORE_DATA")
    return Path(env).expanduser().resolve() if env and env != SAMPLE_NAME else None


def env_wants_sample() -> bool:
    """Whether ``XLCORE_DATA=sample`` asks for the built-in sample corpus."""
    return os.environ.get("XLCORE_DATA") == SAMPLE_NAME
