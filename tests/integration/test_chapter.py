"""A chapter reads runs, it never computes them: ``xlcore.chapter.open`` stops with the command
that computes what is missing, and that command computes exactly that."""

import re
import shlex

import pytest

from xlcore import chapter, cli
from xlcore.errors import ConfigError

# A small smoke grid: two regimes, one pair, one task, no analyses.
SMALL = {
    "pairs": ["en-de"],
    "tasks": ["pos"],
    "overrides": ["regimes=baseline,sequential", "analyses=", "tgt_langs=de"],
}


def test_missing_runs_name_the_command_that_computes_them(tmp_path):
    with pytest.raises(chapter.RunsMissingError) as err:
        chapter.open("transfer", profile="smoke", runs=tmp_path, **SMALL)
    message = str(err.value)
    assert re.search(r"reads \d+ runs, \d+ of them not computed", message)
    line = next(ln.strip() for ln in message.splitlines() if ln.strip().startswith("xlcore grid"))
    assert f"--runs {tmp_path}" in line
    assert cli.main(shlex.split(line)[1:] + ["--quiet"]) == 0
    opened = chapter.open("transfer", profile="smoke", runs=str(tmp_path), **SMALL)
    assert opened.config.finetune.regimes == ("baseline", "sequential")
    assert opened.config.analysis.analyses == ()
    assert set(opened.evaluations["regime"]) == {"baseline", "sequential"}
    assert set(opened.evaluations["lang"]) == {"en", "de"}
    assert opened.grid.root == tmp_path


def test_the_loss_comparison_is_part_of_the_combining_chapters_experiments(tmp_path):
    params = {**SMALL, "losses": ["l2", "infonce_strong"], "loss_task": "pos"}
    configs = chapter.experiment_configs("combining", "smoke", params)
    assert [c.align.loss for c in configs[1:]] == ["l2", "infonce_strong"]
    assert len(chapter.experiment_configs("transfer", "smoke", params)) == 1
    with pytest.raises(chapter.RunsMissingError, match="--chapter combining"):
        chapter.open("combining", profile="smoke", runs=tmp_path, **params)


def test_any_config_key_is_a_chapter_parameter_through_overrides():
    config = chapter.config_of("smoke", {"overrides": ["align_alpha=0.5"], "pairs": []})
    assert config.align.alpha == 0.5
    assert config.data.pairs == chapter.config_of("smoke", {}).data.pairs  # empty: the profile's
    with pytest.raises(ConfigError, match="align_alpha"):
        chapter.config_of("smoke", {"overrides": ["align_alpah=0.5"]})


def test_grid_cli_checks_chapter_parameters(capsys):
    assert cli.main(["grid", "--profile", "smoke", "--param", "pairs=['en-de']"]) == 2
    assert "--param needs --chapter" in capsys.readouterr().err
    argv = ["grid", "--profile", "smoke", "--chapter", "transfer", "--param", "pair=1"]
    assert cli.main(argv) == 2
    assert "pairs" in capsys.readouterr().err  # did you mean
