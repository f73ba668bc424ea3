"""Training-loop building blocks: deterministic batches, pooling, divergence stops with the step."""

import numpy as np
import pytest
import torch
from torch import nn

from xlcore import encoders, runs
from xlcore.batching import batch_at, collate, length_pieces
from xlcore.data import load_pos
from xlcore.errors import TrainingError
from xlcore.paths import SAMPLE_ROOT
from xlcore.taskmodel import TaskModel, split_task_loss
from xlcore.tasks import encode_pos
from xlcore.train import (
    FinetuneSettings,
    _fused,
    _optimizer,
    _optimizer_name,
    finetune,
)


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
    model = TaskModel(encoder, "sib", pooling="mean").eval()
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
    model = TaskModel(encoder, "pos")
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
    run = runs.prepare("finetune", "nan", {"x": 1}, version=1, root=tmp_path)
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
            tokenizer=tok,
            device=torch.device("cpu"),
            progress=False,
        )
    assert not run.complete


def test_collate_pads_labels_with_ignore_index(tiny):
    _, tok = tiny
    data = encode_pos(tok, load_pos("en", "test", SAMPLE_ROOT).select(range(2)), 64)
    batch = collate(data, tok, "pos")
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


def _objective(encoder, tok):
    from xlcore.data import load_parallel
    from xlcore.objective import AlignmentData, AlignmentObjective
    from xlcore.tokens import split_words

    bitext = [(split_words(p.en), split_words(p.x)) for p in load_parallel("de", SAMPLE_ROOT)]
    links = [[(0, 0), (1, 1)] for _ in bitext]
    pairs = AlignmentData([s for s, _ in bitext], [t for _, t in bitext], links)
    return AlignmentObjective(
        encoder,
        tok,
        pairs,
        loss_name="infonce_strong",
        layer=-1,
        batch_size=4,
        max_length=32,
        seed=1,
    )


def _train(tmp_path, name, tok, data, *, strategy=None, **settings):
    import copy

    encoder = copy.deepcopy(encoders.load("tiny-xlmr")[0])
    torch.manual_seed(0)
    model = TaskModel(encoder, "pos")
    objective = _objective(encoder, tok) if strategy is not None else None
    run = runs.prepare("finetune", name, {"name": name}, version=1, root=tmp_path)
    run.path.mkdir(parents=True)
    torch.manual_seed(0)
    return finetune(
        run,
        model,
        data,
        data,
        settings=_settings(group_by_length=True, **settings),
        tokenizer=tok,
        device=torch.device("cpu"),
        objective=objective,
        strategy=strategy or "joint",
        progress=False,
    )


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


def test_length_pieces_cover_the_batch_and_separate_short_from_long(monkeypatch):
    import xlcore.batching

    lengths = [5, 60, 7, 58, 6, 61, 5, 59]
    monkeypatch.setattr(xlcore.batching.torch, "get_num_threads", lambda: 1)
    monkeypatch.setattr(xlcore.batching, "CALL_COST_TOKENS", 1000)  # calls dearer than padding
    assert length_pieces(lengths) == [[0, 6, 4, 2, 3, 7, 1, 5]]
    monkeypatch.setattr(xlcore.batching, "CALL_COST_TOKENS", 20)
    pieces = length_pieces(lengths)
    assert sorted(i for p in pieces for i in p) == list(range(8))
    assert [sorted(lengths[i] for i in p) for p in pieces] == [[5, 5, 6, 7], [58, 59, 60, 61]]
    assert length_pieces([10] * 6) == [list(range(6))]  # nothing to gain: one piece
    assert length_pieces([]) == []


@pytest.mark.parametrize("task", ["pos", "sib"])
def test_split_batch_has_the_padded_batch_loss_and_gradient(tiny, task, monkeypatch):
    import copy

    import xlcore.batching

    monkeypatch.setattr(xlcore.batching, "CALL_COST_TOKENS", 1)  # split wherever padding is saved

    from xlcore.data import load_sib
    from xlcore.tasks import encode_sib

    encoder, tok = copy.deepcopy(tiny[0]), tiny[1]
    if task == "pos":
        data = encode_pos(tok, load_pos("en", "train", SAMPLE_ROOT), 64)
    else:
        data = encode_sib(tok, load_sib("en", "train", SAMPLE_ROOT), 64)
    by_length = sorted(data, key=lambda e: len(e["input_ids"]))
    examples = by_length[:4] + by_length[-4:]  # short and long: worth splitting
    batch = collate(examples, tok, task)
    assert len(length_pieces(batch["attention_mask"].sum(1).tolist())) > 1
    torch.manual_seed(0)
    n_labels = 17 if task == "pos" else 7
    model = TaskModel(encoder, task).eval()  # dropout off: deterministic losses
    logits = model(batch["input_ids"], batch["attention_mask"])
    padded = torch.nn.functional.cross_entropy(
        logits.reshape(-1, n_labels), batch["labels"].reshape(-1), ignore_index=-100
    )
    split = split_task_loss(model, batch, torch.device("cpu"))
    assert split.item() == pytest.approx(padded.item(), rel=1e-5)
    params = [p for p in model.parameters() if p.requires_grad]
    for a, b in zip(
        torch.autograd.grad(padded, params, allow_unused=True),
        torch.autograd.grad(split, params, allow_unused=True),
        strict=True,
    ):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_piece_encoder_gives_the_padded_states_on_real_tokens(tiny, monkeypatch):
    import copy

    import xlcore.batching
    from xlcore.taskmodel import PieceEncoder

    monkeypatch.setattr(xlcore.batching, "CALL_COST_TOKENS", 1)
    encoder, tok = copy.deepcopy(tiny[0]).eval(), tiny[1]  # eval: no dropout draws
    words = [["a"], ["the", "cat", "sat", "on", "the", "mat", "and", "the", "dog", "too"], ["b"]]
    enc = tok(words, is_split_into_words=True, padding=True, return_tensors="pt")
    mask = enc["attention_mask"].bool()
    with torch.no_grad():
        full = encoder(**enc, output_hidden_states=True).hidden_states
        pieces = PieceEncoder(encoder)(**enc).hidden_states
    assert len(pieces) == len(full)
    for a, b in zip(pieces, full, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a[mask], b[mask], rtol=1e-5, atol=1e-5)
        assert not a[~mask].any()  # zeros on padding


def _adamw_twins(**torch_options):
    """Two equal linear layers: one under torch's AdamW with ``torch_options`` and the
    grid's weight-decay groups, one left for :func:`_optimizer`."""
    torch.manual_seed(0)
    ref, model = nn.Linear(8, 4), nn.Linear(8, 4)
    model.load_state_dict(ref.state_dict())
    groups = [
        {"params": [ref.weight], "weight_decay": 0.01},
        {"params": [ref.bias], "weight_decay": 0.0},
    ]
    return ref, torch.optim.AdamW(groups, lr=1e-2, **torch_options), model


def _five_steps(*pairs) -> None:
    x = torch.randn(16, 8)
    for model, opt in pairs:
        for _ in range(5):
            model(x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()


def test_adamw_is_fused_on_cpu_and_matches_the_per_parameter_loop():
    assert _fused([torch.zeros(2)]) is True
    assert _fused([torch.zeros(2, device="meta")]) is None
    ref, loop, fast = _adamw_twins(foreach=False)
    opt = _optimizer([fast], lr=1e-2, weight_decay=0.01)
    assert opt.defaults["fused"] is True and _optimizer_name(opt) == "fused"
    _five_steps((ref, loop), (fast, opt))
    assert not torch.equal(ref.weight, torch.zeros_like(ref.weight))
    for a, b in zip(ref.parameters(), fast.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_progress_steps_outside_dask_are_the_plain_range():
    from xlcore import progress

    assert list(progress.steps("x", 3, 7, show=False)) == [3, 4, 5, 6]


@pytest.mark.parametrize(("every", "saved"), [(2, [2, 4]), (None, [])])
def test_checkpoints_fall_every_checkpoint_steps_and_never_when_unset(
    tiny, tmp_path, monkeypatch, every, saved
):
    import xlcore.checkpoint

    _, tok = tiny
    data = encode_pos(tok, load_pos("en", "train", SAMPLE_ROOT), 64)
    steps = []
    monkeypatch.setattr(xlcore.checkpoint, "save", lambda run, parts, **state: steps.append(state))
    _train(tmp_path, "ckpt", tok, data, checkpoint_steps=every)
    assert [s["step"] for s in steps] == saved  # never after the last of the 6 steps
