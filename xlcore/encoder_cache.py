"""The on-disk cache of converted and built encoders: directories that appear complete or not at
all, keyed by what they were built from and the recipe version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from xlcore.paths import cache_dir

Model = PreTrainedModel
Tok = PreTrainedTokenizerFast


PROVENANCE_FILE = "xlcore.json"


# Bump when a conversion or build recipe changes, so old caches are not read as current.
RECIPE_VERSION = "2"


def atomic_dir(directory: Path, write: Callable[[Path], None], replace: bool = False) -> Path:
    """Create ``directory`` by ``write(tmp)`` into a sibling temp dir and one atomic rename.

    Without ``replace``, a concurrent builder that renamed first wins (its copy is equally
    complete); with it, an existing directory is moved aside and deleted once the new one is in.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    trash = None
    try:
        write(tmp)
        if replace and directory.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
            os.replace(directory, trash)  # renaming onto an empty directory is allowed
        try:
            os.replace(tmp, directory)
        except OSError:
            if not directory.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    return directory


def cached(directory: Path, build: Callable[[Path], None]) -> Path:
    return directory if directory.is_dir() else atomic_dir(directory, build)


def encoders_cache(cache: Path | None) -> Path:
    return (Path(cache) if cache is not None else cache_dir()) / "encoders"
