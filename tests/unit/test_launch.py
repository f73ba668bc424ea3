"""The book's repository and launch buttons (xlcore.launch)."""

import shutil

import yaml

from xlcore import launch
from xlcore.paths import PROJECT_DIR


def test_repository_url_from_the_environment_or_none(monkeypatch, tmp_path):
    monkeypatch.setenv(launch.ENV, "git@github.com:someone/xlalign.git")
    assert launch.repository_url(tmp_path) == "https://github.com/someone/xlalign"
    monkeypatch.setenv(launch.ENV, "https://github.com/someone/xlalign/")
    assert launch.repository_url(tmp_path) == "https://github.com/someone/xlalign"
    monkeypatch.setenv(launch.ENV, "https://example.org/xlalign")  # buttons need GitHub
    assert launch.repository_url(tmp_path) is None
    monkeypatch.delenv(launch.ENV)
    assert launch.repository_url(tmp_path) is None  # no git checkout, no remote


def test_staged_config_gets_the_url_or_no_buttons(tmp_path):
    staged = tmp_path / "_config.yml"
    shutil.copy(PROJECT_DIR / "_config.yml", staged)
    launch.configure(staged, "https://github.com/someone/xlalign")
    config = yaml.safe_load(staged.read_text())
    assert config["repository"]["url"] == "https://github.com/someone/xlalign"
    assert config["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert config["html"]["use_repository_button"] is True
    shutil.copy(PROJECT_DIR / "_config.yml", staged)
    launch.configure(staged, None)
    config = yaml.safe_load(staged.read_text())
    assert "repository" not in config and "launch_buttons" not in config
    assert config["html"]["use_repository_button"] is False
