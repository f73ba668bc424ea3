"""Scoring: POS accuracy over words (truncated words count wrong), SIB accuracy and macro-F1."""

import pytest

from xlcore.data import pos_dataset
from xlcore.evaluate import majority_baseline
from xlcore.readers import TaggedSentence
from xlcore.tasks import correct_per_example, get_task
from xlcore.tokens import IGNORE_INDEX as X


def test_pos_accuracy_counts_truncated_words_as_wrong():
    encoded = [
        {"input_ids": [0, 5, 6, 2], "labels": [X, 1, 2, X], "n_words": 2},
        {"input_ids": [0, 7, 2], "labels": [X, 3, X], "n_words": 3},  # 2 words truncated
    ]
    preds = [[1, 0], [3]]
    out = get_task("pos").score(encoded, preds)
    assert out["accuracy"] == pytest.approx(2 / 5)
    assert out["truncated_words"] == 2 and out["n"] == 5


def test_sib_scores_match_hand_computation():
    encoded = [{"labels": g} for g in [0, 0, 1, 2]]
    out = get_task("sib").score(encoded, [0, 1, 1, 2])
    assert out["accuracy"] == pytest.approx(0.75)
    # per-class F1: class 0 2/3, class 1 2/3, class 2 1
    assert out["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_per_example_correctness_adds_up_to_the_accuracy():
    """Per sentence: correct words and words scored (truncated ones wrong); one per SIB
    sentence. The sums give the task's accuracy."""
    encoded = [
        {"input_ids": [0, 5, 6, 2], "labels": [X, 1, 2, X], "n_words": 2},
        {"input_ids": [0, 7, 2], "labels": [X, 3, X], "n_words": 3},
    ]
    preds = [[1, 0], [3]]
    correct, total = correct_per_example(encoded, preds)
    assert (correct, total) == ([1, 1], [2, 3])
    assert sum(correct) / sum(total) == get_task("pos").score(encoded, preds)["accuracy"]
    sib = [{"labels": g, "n_words": 1} for g in [0, 0, 1, 2]]
    assert correct_per_example(sib, [0, 1, 1, 2]) == ([1, 0, 1, 1], [1, 1, 1, 1])


def test_majority_baseline():
    train = pos_dataset([TaggedSentence(("a", "b", "c"), ("NOUN", "NOUN", "VERB"))])
    test = pos_dataset([TaggedSentence(("x", "y"), ("NOUN", "DET"))])
    assert majority_baseline(train, test) == pytest.approx(0.5)


@pytest.mark.parametrize("task", ["pos", "sib"])
def test_split_prediction_matches_padded_batches_on_less_padding(task, monkeypatch):
    """``split_by_length`` runs each batch in length pieces: the same predictions (fp32) as one
    padded batch, with fewer tokens through the model."""
    import copy

    import torch

    import xlcore.batching
    from xlcore import encoders
    from xlcore.data import load_pos, load_sib
    from xlcore.evaluate import predict
    from xlcore.paths import SAMPLE_ROOT
    from xlcore.taskmodel import TaskModel
    from xlcore.tasks import encode_pos, encode_sib

    monkeypatch.setattr(xlcore.batching, "CALL_COST_TOKENS", 1)  # split wherever padding is saved
    encoder, tok = encoders.load("tiny-xlmr")
    if task == "pos":
        data = encode_pos(tok, load_pos("en", "train", SAMPLE_ROOT), 64)
    else:
        data = encode_sib(tok, load_sib("en", "train", SAMPLE_ROOT), 64)
    torch.manual_seed(0)
    model = TaskModel(copy.deepcopy(encoder), task)
    seen: list[int] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].numel()))
    cpu = torch.device("cpu")
    padded = predict(model, data, task, tok, 64, cpu)
    padded_tokens, seen[:] = sum(seen), []
    split = predict(model, data, task, tok, 64, cpu, split_by_length=True)
    assert split == padded
    assert len(seen) > 1 and sum(seen) < padded_tokens
    assert model.training  # the caller's mode is restored
