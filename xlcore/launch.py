"""The book's repository and Binder launch buttons: configured in ``_config.yml``, with
the repository's URL filled in when the book is staged.

The URL comes from ``XLALIGN_REPOSITORY`` or the git remote ``origin`` of the checkout (a GitHub
remote, as Jupyter Book's buttons need). Without one the staged config turns the buttons off, so
no page links to a repository that does not exist.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

ENV = "XLALIGN_REPOSITORY"
_GITHUB = re.compile(
    r"^(?:https://github\.com/|git@github\.com:)(?P<slug>[\w.-]+/[\w.-]+?)(?:\.git)?/?$"
)
_BUTTONS = ("use_repository_button", "use_issues_button")


def repository_url(root: Path) -> str | None:
    """The GitHub URL of the project at ``root``: ``$XLALIGN_REPOSITORY``, else its git remote
    ``origin`` when that is on GitHub, else None."""
    given = os.environ.get(ENV) or _origin(root)
    match = _GITHUB.match(given or "")
    return f"https://github.com/{match['slug']}" if match else None


def _origin(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "remote", "get-url", "origin"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def configure(config_file: Path, url: str | None) -> None:
    """Fill the staged ``config_file``'s repository URL, or turn its buttons off without one."""
    config = yaml.safe_load(config_file.read_text())
    html = config.setdefault("html", {})
    if url:
        config.setdefault("repository", {})["url"] = url
        html.update(dict.fromkeys(_BUTTONS, True))
    else:
        config.pop("repository", None)
        config.pop("launch_buttons", None)
        html.update(dict.fromkeys(_BUTTONS, False))
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
