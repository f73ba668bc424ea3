"""Training-loop building blocks: deterministic batches, pooling, divergence stops with the step."""

import numpy as np
import pytest
import torch

from xlcore import encoders, runs
from xlcore.data import load_pos
from xlcore.errors import TrainingError
from xlcore.evaluate import collate, encode_pos
from xlcore.paths import SAMPLE_ROOT
from xlcore.train import FinetuneSettings, TaskModel, batch_at, finetune


def test_batches_cover_each_epoch_once_and_are_reproducible():
    n, bs = 10, 4
    epoch0 = np.concatenate([batch_at(s, n, bs, seed=3) for s in range(3)])
    epoch1 = np.concatenate([batch_at(s, n, bs, seed=3) for s in range(3, 6)])
    assert sorted(epoch0) == list(range(n)) and sorted(epoch1) == list(range(n))
    assert not np.array_equal(epoch0, epoch1)  # reshuffled each epoch
    assert np.array_equal(batch_at(4, n, bs, seed=3), batch_at(4, n, bs, seed=3))
    assert not np.array_equal(epoch0, np.concatenate([batch_at(s, n, bs, 4) for s in range(3)]))


@pytest.fixture(scope="module")
def tiny():
    return encoders.load("tiny-xlmr")


def test_mean_pooling_ignores_padding(tiny):
    encoder, tok = tiny
    torch.manual_seed(0)
    model = TaskModel(encoder, "sib", 7, pooling="mean").eval()
    short = tok(["Ein kurzer Satz."], return_tensors="pt")
    padded = tok(
        ["Ein kurzer Satz.", "Ein viel längerer Satz mit mehr Wörtern als der erste."],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        a = model(short["input_ids"], short["attention_mask"])[0]
        b = model(padded["input_ids"], padded["attention_mask"])[0]
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_nan_loss_stops_with_the_step_number(tiny, tmp_path):
    encoder, tok = tiny
    sentences = load_pos("en", "train", SAMPLE_ROOT)
    data = encode_pos(tok, sentences, 64)
    model = TaskModel(encoder, "pos", 17)
    settings = FinetuneSettings(
        max_steps=5,
        batch_size=4,
        eval_batch_size=8,
        learning_rate=1e-3,
        weight_decay=0.0,
        warmup_ratio=0.0,
        eval_steps=5,
        checkpoint_steps=5,
        seed=1,
    )
    run = runs.prepare("finetune", "nan", {"x": 1}, root=tmp_path)
    run.path.mkdir(parents=True)
    real_forward = model.forward

    def diverge_at_step_2(input_ids, attention_mask, calls=[0]):  # noqa: B006
        calls[0] += 1
        logits = real_forward(input_ids, attention_mask)
        return logits * float("nan") if calls[0] == 3 else logits

    model.forward = diverge_at_step_2
    with pytest.raises(TrainingError, match="task loss became nan at step 2"):
        finetune(
            run,
            model,
            data,
            data,
            settings=settings,
            pad_id=tok.pad_token_id,
            device=torch.device("cpu"),
            progress=False,
        )
    assert not run.complete


def test_collate_pads_labels_with_ignore_index(tiny):
    _, tok = tiny
    data = encode_pos(tok, load_pos("en", "test", SAMPLE_ROOT)[:2], 64)
    batch = collate(data, tok.pad_token_id, "pos")
    width = max(len(d["input_ids"]) for d in data)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, width)
    short = int(np.argmin([len(d["input_ids"]) for d in data]))
    n = len(data[short]["input_ids"])
    assert (batch["labels"][short, n:] == -100).all()
    assert (batch["input_ids"][short, n:] == tok.pad_token_id).all()
    assert (batch["attention_mask"][short, n:] == 0).all()
