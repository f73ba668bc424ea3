"""The explorer's widget JavaScript: served by the book itself when npm can fetch it once, else
loaded from the pinned CDN location.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from xlcore.errors import BookError
from xlcore.paths import PROJECT_DIR

WIDGET_FILES = ("embed-amd.js", "106.embed.js", "330.embed.js", "embed.js.LICENSE.txt")
FONT_SUFFIXES = (".woff2", ".woff", ".ttf", ".eot", ".svg")
# package → its file on jsDelivr's npm mirror, at the version book/_vendor/package.json pins
CDN_FILES = {"requirejs": "require.js", "@jupyter-widgets/html-manager": "dist/embed-amd.js"}


def cdn_urls(root: Path = PROJECT_DIR) -> list[str]:
    """require.js, then the widget manager, at their pinned versions on jsDelivr."""
    pins = json.loads((root / "book" / "_vendor" / "package.json").read_text())["dependencies"]
    return [f"https://cdn.jsdelivr.net/npm/{p}@{pins[p]}/{f}" for p, f in CDN_FILES.items()]


def write_cdn_config(root: Path, out: Path) -> None:
    """``root``'s ``_config.yml`` with the widget JavaScript taken from the CDN, not the book."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    sphinx = config["sphinx"]["config"]
    for key in ("html_static_path", "html_extra_path"):
        sphinx.pop(key, None)
    sphinx["nb_ipywidgets_js"] = {url: {} for url in cdn_urls(root)}
    out.write_text(yaml.safe_dump(config, sort_keys=False))


def vendor_widgets(root: Path = PROJECT_DIR) -> Path | None:
    """Put the ipywidgets HTML manager and require.js into ``book/_vendor/static/widgets``.

    They come from npm (``book/_vendor/package-lock.json`` pins the versions), once; the book
    then serves them itself, so the explorer works without a CDN. Without npm: None, and the
    book loads them from the pinned CDN location (:func:`write_cdn_config`).
    """
    vendor = root / "book" / "_vendor"
    target = vendor / "static" / "widgets"
    fonts = vendor / "extra" / "book" / "@jupyter-widgets"
    if all((target / f).is_file() for f in (*WIDGET_FILES, "require.js")) and any(
        fonts.glob("*.woff2")
    ):
        return target
    npm = shutil.which("npm")
    if npm is None:
        print(
            "xlcore book: npm is not installed, so the explorer loads its widget JavaScript from "
            f"{' and '.join(cdn_urls(root))}; install Node.js (e.g. `apt-get install nodejs npm`) "
            "to serve it from the book itself",
            flush=True,
        )
        return None
    with tempfile.TemporaryDirectory() as tmp:
        for f in ("package.json", "package-lock.json"):
            shutil.copy(vendor / f, tmp)
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise BookError(f"npm ci failed in {vendor}:\n{proc.stderr[-2000:]}")
        modules = Path(tmp) / "node_modules"
        staged = vendor / "static" / ".widgets.partial"
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        dist = modules / "@jupyter-widgets" / "html-manager" / "dist"
        for f in WIDGET_FILES:
            shutil.copy(dist / f, staged / f)
        # The widget CSS asks for its icon fonts relative to the page (book/…); two of its style
        # sheets resolve them against different folders: serve them in both.
        shutil.rmtree(vendor / "extra", ignore_errors=True)
        base = vendor / "extra" / "book" / "@jupyter-widgets"
        for fonts in (base, base / "html-manager" / "dist"):
            fonts.mkdir(parents=True, exist_ok=True)
            for f in dist.iterdir():
                if f.suffix in FONT_SUFFIXES:
                    shutil.copy(f, fonts / f.name)
        shutil.copy(modules / "requirejs" / "require.js", staged / "require.js")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staged, target)
    return target
