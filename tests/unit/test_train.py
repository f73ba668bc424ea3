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


def _settings(**kw):
    base = dict(
        max_steps=6,
        batch_size=4,
        eval_batch_size=8,
        learning_rate=1e-3,
        weight_decay=0.0,
        warmup_ratio=0.0,
        eval_steps=3,
        checkpoint_steps=6,
        seed=1,
    )
    return FinetuneSettings(**{**base, **kw})


def _objective_and_probe(encoder, tok, data, steps):
    from xlcore.align import build_alignment_loss
    from xlcore.data import load_parallel
    from xlcore.tokens import split_words
    from xlcore.train import AlignmentData, AlignmentObjective, GradientProbe

    bitext = [(split_words(p.en), split_words(p.x)) for p in load_parallel("de", SAMPLE_ROOT)]
    links = [[(0, 0), (1, 1)] for _ in bitext]
    pairs = AlignmentData([s for s, _ in bitext], [t for _, t in bitext], links)
    objective = AlignmentObjective(
        encoder,
        tok,
        pairs,
        loss_name="infonce_strong",
        layer=-1,
        batch_size=4,
        max_length=32,
        seed=1,
    )
    torch.manual_seed(5)
    probe_loss = build_alignment_loss("infonce_strong", encoder.config.hidden_size)
    probe = GradientProbe(
        steps,
        [collate(data[:2], tok.pad_token_id, "pos"), collate(data[2:4], tok.pad_token_id, "pos")],
        {"en-de": (probe_loss, pairs, None)},
        tokenizer=tok,
        layer=-1,
        max_length=32,
        batch_size=2,
        device=torch.device("cpu"),
    )
    return objective, probe


def _train(tmp_path, name, tok, data, *, strategy=None, probe_steps=None):
    import copy

    encoder = copy.deepcopy(encoders.load("tiny-xlmr")[0])
    torch.manual_seed(0)
    model = TaskModel(encoder, "pos", 17)
    objective = probe = None
    if strategy is not None or probe_steps is not None:
        objective, probe = _objective_and_probe(encoder, tok, data, probe_steps or [])
    run = runs.prepare("finetune", name, {"name": name}, root=tmp_path)
    run.path.mkdir(parents=True)
    torch.manual_seed(0)
    return finetune(
        run,
        model,
        data,
        data,
        settings=_settings(group_by_length=True),
        pad_id=tok.pad_token_id,
        device=torch.device("cpu"),
        objective=objective if strategy else None,
        strategy=strategy or "joint",
        probe=probe if probe_steps else None,
        progress=False,
    )


def test_probing_does_not_change_training(tiny, tmp_path):
    _, tok = tiny
    data = encode_pos(tok, load_pos("en", "train", SAMPLE_ROOT), 64)
    plain = _train(tmp_path, "plain", tok, data)
    probed = _train(tmp_path, "probed", tok, data, probe_steps=[0, 3, 6])
    assert plain["log"] == probed["log"]
    assert plain["gradients"] == [] and {r["step"] for r in probed["gradients"]} == {0, 3, 6}


@pytest.mark.parametrize("strategy", ["alternating", "pcgrad", "gradvac"])
def test_strategies_train_both_objectives(tiny, tmp_path, strategy):
    _, tok = tiny
    data = encode_pos(tok, load_pos("en", "train", SAMPLE_ROOT), 64)
    out = _train(tmp_path, strategy, tok, data, strategy=strategy)
    assert all("align_loss" in e for e in out["log"])
    assert all(("grad_cos" in e) == (strategy != "alternating") for e in out["log"])
    joint = _train(tmp_path, f"joint-{strategy}", tok, data, strategy="joint")
    assert [e["task_loss"] for e in out["log"]][1:] != [e["task_loss"] for e in joint["log"]][1:]


def test_length_grouped_batches_cover_each_epoch_once():
    lengths = list(np.random.default_rng(0).integers(3, 60, size=203))
    batches = [batch_at(s, 203, 8, seed=2, lengths=lengths) for s in range(26)]
    assert sorted(np.concatenate(batches)) == list(range(203))
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches])
    plain = [batch_at(s, 203, 8, seed=2) for s in range(26)]
    assert spread < 0.5 * np.mean([np.ptp([lengths[i] for i in b]) for b in plain])
