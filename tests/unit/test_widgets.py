"""Without Node the book still builds: the explorer's widget JavaScript then comes from the
pinned CDN location, and the build says so."""

import json
import shutil

import yaml

from xlcore import widgets
from xlcore.paths import PROJECT_DIR


def _fresh_root(tmp_path):
    """A checkout's config and widget pins, without vendored files."""
    (tmp_path / "book" / "_vendor").mkdir(parents=True)
    shutil.copy(PROJECT_DIR / "_config.yml", tmp_path / "_config.yml")
    for f in ("package.json", "package-lock.json"):
        shutil.copy(PROJECT_DIR / "book" / "_vendor" / f, tmp_path / "book" / "_vendor" / f)
    return tmp_path


def test_without_npm_the_widgets_come_from_the_pinned_cdn(tmp_path, monkeypatch, capsys):
    root = _fresh_root(tmp_path)
    monkeypatch.setattr(widgets.shutil, "which", lambda name: None)
    assert widgets.vendor_widgets(root) is None
    pins = json.loads((root / "book" / "_vendor" / "package.json").read_text())["dependencies"]
    urls = widgets.cdn_urls(root)
    assert urls == [
        f"https://cdn.jsdelivr.net/npm/requirejs@{pins['requirejs']}/require.js",
        "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@"
        f"{pins['@jupyter-widgets/html-manager']}/dist/embed-amd.js",
    ]
    said = capsys.readouterr().out
    assert "npm is not installed" in said and all(u in said for u in urls)
    widgets.write_cdn_config(root, tmp_path / "staged.yml")
    config = yaml.safe_load((tmp_path / "staged.yml").read_text())["sphinx"]["config"]
    assert list(config["nb_ipywidgets_js"]) == urls
    assert "html_static_path" not in config and "html_extra_path" not in config
    assert config["nb_render_markdown_format"] == "myst"  # the rest is kept
