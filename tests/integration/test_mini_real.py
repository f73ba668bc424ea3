"""A short mini-profile run on real data with the real encoder: transfer well above majority."""

import pytest

from xlcore.config import make_config
from xlcore.grid import evaluation_frame, run_grid

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def test_short_mini_pos_run_beats_majority(data_root, tmp_path):
    cfg = make_config(
        "mini",
        {
            "data": str(data_root),
            "tasks": ["pos"],
            "seeds": [1],
            "regimes": ["baseline"],
            "pairs": [],
            "tgt_langs": ["de"],
            "pos_max_steps": 40,
            "train_limit": 640,
            "dev_limit": 100,
            "test_limit": 100,
            "eval_steps": 20,
        },
    )
    grid = run_grid(cfg, root=tmp_path / "runs", progress=False)
    frame = evaluation_frame(grid).set_index("lang")
    en, de = frame.loc["en"], frame.loc["de"]
    # Majority tag (NOUN) scores ~0.17-0.2; a working tagger is far above it.
    assert en["accuracy"] > en["majority_accuracy"] + 0.4, frame
    assert de["accuracy"] > de["majority_accuracy"] + 0.25, frame
    assert en["n"] > 1000 and de["n"] > 1000
