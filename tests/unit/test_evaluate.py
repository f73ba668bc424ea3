"""Scoring: POS accuracy over words (truncated words count wrong), SIB accuracy and macro-F1."""

import pytest

from xlcore.data import TaggedSentence
from xlcore.evaluate import majority_baseline, score
from xlcore.tokens import IGNORE_INDEX as X


def test_pos_accuracy_counts_truncated_words_as_wrong():
    encoded = [
        {"input_ids": [0, 5, 6, 2], "labels": [X, 1, 2, X], "n_words": 2},
        {"input_ids": [0, 7, 2], "labels": [X, 3, X], "n_words": 3},  # 2 words truncated
    ]
    preds = [[1, 0], [3]]
    out = score(encoded, preds, "pos")
    assert out["accuracy"] == pytest.approx(2 / 5)
    assert out["truncated_words"] == 2 and out["n"] == 5


def test_sib_scores_match_hand_computation():
    encoded = [{"labels": g} for g in [0, 0, 1, 2]]
    out = score(encoded, [0, 1, 1, 2], "sib")
    assert out["accuracy"] == pytest.approx(0.75)
    # per-class F1: class 0 2/3, class 1 2/3, class 2 1
    assert out["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_majority_baseline():
    train = [TaggedSentence(("a", "b", "c"), ("NOUN", "NOUN", "VERB"))]
    test = [TaggedSentence(("x", "y"), ("NOUN", "DET"))]
    assert majority_baseline(train, test) == pytest.approx(0.5)
