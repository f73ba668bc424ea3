"""Alignment losses against hand computations (plain loops and math), gradients, bounds."""

import copy
import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from xlcore.align import encode_parallel
from xlcore.errors import ConfigError
from xlcore.losses import (
    ALIGNMENT_LOSSES,
    AlignBatch,
    L2AnchorLoss,
    alignment_forward,
    build_alignment_loss,
    make_align_batch,
)

TAU = 0.1
H = 4


def make_batch(dtype=torch.float32, requires_grad=False, seed=0):
    """2 sentence pairs, 3 aligned word pairs, one padded source and target position."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(2, 3, H, generator=g, dtype=dtype)
    tgt = torch.randn(2, 4, H, generator=g, dtype=dtype)
    ref = torch.randn(2, 3, H, generator=g, dtype=dtype)
    src_mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    tgt_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    src.requires_grad_(requires_grad)
    tgt.requires_grad_(requires_grad)
    # Sentence 0: word 0 (pos 1) ↔ word 1 (pos 2), word 1 (pos 2) ↔ word 0 (pos 1);
    # sentence 1: word 0 (pos 1) ↔ word 1 (pos 2).
    batch = make_align_batch(
        src,
        tgt,
        src_mask,
        tgt_mask,
        [[(0, 1), (1, 0)], [(0, 1)]],
        src_starts=[[1, 2], [1, -1]],
        tgt_starts=[[1, 2], [1, 2]],
        src_hidden_ref=ref,
    )
    assert batch.src_idx.tolist() == [1, 2, 4] and batch.tgt_idx.tolist() == [2, 1, 6]
    return batch


def rows(t):
    return [[float(x) for x in row] for row in t.detach()]


def cos(a, b):
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def ce(logits, target):
    """-log softmax(logits)[target] for a list of floats (-inf allowed)."""
    return -logits[target] + math.log(sum(math.exp(v) for v in logits if v != -math.inf))


def relu(v):
    return [max(0.0, x) for x in v]


def aligned_lists(batch, proj=lambda v: v):
    hs, ht = batch.aligned()
    return [proj(v) for v in rows(hs)], [proj(v) for v in rows(ht)]


def weak_by_hand(zs, zt):
    p = len(zs)
    s = [[cos(zs[i], zt[j]) / TAU for j in range(p)] for i in range(p)]
    fwd = sum(ce(s[i], i) for i in range(p)) / p
    bwd = sum(ce([s[i][j] for i in range(p)], j) for j in range(p)) / p
    return 0.5 * (fwd + bwd)


def strong_by_hand(zs, zt):
    z = zs + zt
    n, p = len(z), len(zs)
    total = 0.0
    for a in range(n):
        logits = [-math.inf if b == a else cos(z[a], z[b]) / TAU for b in range(n)]
        total += ce(logits, (a + p) % n)
    return total / n


def identity_projector(loss):
    with torch.no_grad():
        loss.projector[0].weight.copy_(torch.eye(H))
        loss.projector[2].weight.copy_(torch.eye(H))
    return loss


# ----------------------------------------------------------------------------- values


def test_weak_is_half_forward_plus_backward_ce():
    batch = make_batch()
    loss = build_alignment_loss("infonce_weak", H, projector=False)
    zs, zt = aligned_lists(batch)
    assert loss(batch).item() == pytest.approx(weak_by_hand(zs, zt), rel=1e-5)


def test_strong_matches_joint_softmax_by_hand():
    batch = make_batch()
    loss = build_alignment_loss("infonce_strong", H, projector=False)
    zs, zt = aligned_lists(batch)
    assert loss(batch).item() == pytest.approx(strong_by_hand(zs, zt), rel=1e-5)


def test_strong_minus_weak_is_exactly_the_same_language_negatives():
    batch = make_batch(seed=3)
    strong = build_alignment_loss("infonce_strong", H, projector=False)(batch).item()
    weak = build_alignment_loss("infonce_weak", H, projector=False)(batch).item()
    zs, zt = aligned_lists(batch)
    p = len(zs)
    extra = 0.0
    # Anchor a's strong CE = weak CE + log(1 + Σ_same e^{s_ak} / Σ_other e^{s_ab}).
    for own, other in ((zs, zt), (zt, zs)):
        for a in range(p):
            cross = sum(math.exp(cos(own[a], other[b]) / TAU) for b in range(p))
            same = sum(math.exp(cos(own[a], own[k]) / TAU) for k in range(p) if k != a)
            extra += math.log1p(same / cross)
    assert strong - weak == pytest.approx(extra / (2 * p), rel=1e-4)
    assert strong > weak


@pytest.mark.parametrize("name", ["infonce_weak", "infonce_strong"])
def test_projector_is_applied(name):
    batch = make_batch(seed=3)
    loss = identity_projector(build_alignment_loss(name, H, proj_dim=H))
    zs, zt = aligned_lists(batch, proj=relu)  # g(h) = ReLU(h) with identity weights
    assert all(max(v) > 0 for v in zs + zt)  # cosines are defined
    by_hand = weak_by_hand(zs, zt) if name == "infonce_weak" else strong_by_hand(zs, zt)
    assert loss(batch).item() == pytest.approx(by_hand, rel=1e-5)
    plain = build_alignment_loss(name, H, projector=False)(batch).item()
    assert abs(plain - by_hand) > 1e-3  # the ReLU made a difference


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_l2_is_caos_sum_over_pairs_and_english_words_per_pair(weight):
    # Cao et al.: Σ_pairs ‖h^s − h^t‖² + λ Σ_{source words} ‖h^s − h^s_0‖², both divided by the
    # batch's pair count P (so the ratio of the two terms is Cao's 1 : λ).
    batch = make_batch(seed=2)
    loss = build_alignment_loss("l2", H, anchor_weight=weight)
    hs, ht = aligned_lists(batch)
    pair = sum(
        sum((a - b) ** 2 for a, b in zip(x, y, strict=True)) for x, y in zip(hs, ht, strict=True)
    )
    # Source words at (sentence, position) (0, 1), (0, 2), (1, 1); word 1 of sentence 1 was cut
    # by truncation, and the special and the padding positions are no words.
    anchor = 0.0
    for b, s in [(0, 1), (0, 2), (1, 1)]:
        diff = batch.src_hidden[b, s] - batch.src_hidden_ref[b, s]
        anchor += sum(float(d) ** 2 for d in diff)
    expected = (pair + weight * anchor) / 3
    assert loss(batch).item() == pytest.approx(expected, rel=1e-5)
    assert batch.src_word_idx.tolist() == [1, 2, 4]
    # The anchor's weight relative to the alignment term is λ itself, as in Cao's sums.
    plain = build_alignment_loss("l2", H, anchor_weight=0.0)(batch).item()
    assert (loss(batch).item() - plain) / plain == pytest.approx(weight * anchor / pair, rel=1e-5)


def word_tokenizer(words):
    """A BERT-style word-level fast tokenizer over ``words`` (one piece per word)."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(words)))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


class RecordingL2(L2AnchorLoss):
    """The L2 loss, keeping every batch it is given."""

    def __init__(self, hidden_size, **kwargs):
        super().__init__(hidden_size, **kwargs)
        self.batches = []

    def forward(self, batch):
        self.batches.append(batch)
        return super().forward(batch)


def test_l2_anchor_runs_the_frozen_reference_with_the_trained_encoders_dropout():
    with torch.random.fork_rng():  # the seeds set here must not reach later tests
        src = [["the", "cat", "sat"], ["a", "dog"]]
        tgt = [["die", "Katze", "sitzt"], ["ein", "Hund"]]
        links = [[(1, 1), (2, 2)], [(0, 0), (1, 1)]]
        tok = word_tokenizer([w for s in src + tgt for w in s])
        config = BertConfig(
            vocab_size=len(tok),
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
            hidden_dropout_prob=0.5,
            attention_probs_dropout_prob=0.5,
        )
        torch.manual_seed(0)
        model = BertModel(config, add_pooling_layer=False).train()
        reference = copy.deepcopy(model).eval().requires_grad_(False)
        loss = RecordingL2(16)
        torch.manual_seed(1)
        value = alignment_forward(model, loss, tok, src, tgt, links, reference_model=reference)
        after = torch.get_rng_state()
        (batch,) = loss.batches
        # Dropout is on: the trained encoder's states are not the dropout-free ones.
        enc = encode_parallel(tok, src, tgt, 128)
        with torch.no_grad():
            clean = reference(**enc.src, output_hidden_states=True).hidden_states[-1]
        assert not torch.allclose(clean, batch.src_hidden)
        # Like with like: before any update (θ = θ0) the reference states equal the trained ones
        # exactly, so the anchor and its gradient are 0 and the loss is the alignment term alone.
        assert torch.equal(batch.src_hidden_ref, batch.src_hidden.detach())
        h_src, h_tgt = batch.aligned()
        assert value.item() == pytest.approx((h_src - h_tgt).pow(2).sum(-1).mean().item(), rel=1e-6)
        assert model.training and not reference.training  # modes restored
        # The reference pass leaves the training RNG stream where the trained passes left it.
        torch.manual_seed(1)
        alignment_forward(
            model, build_alignment_loss("l2", 16, anchor_weight=0.0), tok, src, tgt, links
        )
        assert torch.equal(after, torch.get_rng_state())


def test_l2_without_reference_is_a_clear_error():
    batch = make_batch()
    batch.src_hidden_ref = None
    loss = build_alignment_loss("l2", H)
    assert loss.needs_reference and loss.level == "word"
    with pytest.raises(ConfigError, match="reference_model"):
        loss(batch)
    # λ = 0 turns the anchor off and with it the need for a reference.
    assert not build_alignment_loss("l2", H, anchor_weight=0.0).needs_reference


@pytest.mark.parametrize("projector", [False, True])
def test_sentence_infonce_by_hand(projector):
    batch = make_batch(seed=4)
    loss = build_alignment_loss("sentence_infonce", H, projector=projector, proj_dim=H)
    assert loss.level == "sentence" and not loss.needs_reference
    if projector:
        identity_projector(loss)

    def pooled(hidden, mask):
        out = []
        for b in range(hidden.shape[0]):
            keep = [rows(hidden[b])[t] for t in range(hidden.shape[1]) if mask[b, t]]
            vec = [sum(col) / len(keep) for col in zip(*keep, strict=True)]
            out.append(relu(vec) if projector else vec)
        return out

    u = pooled(batch.src_hidden, batch.src_mask)
    v = pooled(batch.tgt_hidden, batch.tgt_mask)
    s = [[cos(u[i], v[j]) / TAU for j in range(2)] for i in range(2)]
    fwd = (ce(s[0], 0) + ce(s[1], 1)) / 2
    bwd = (ce([s[0][0], s[1][0]], 0) + ce([s[0][1], s[1][1]], 1)) / 2
    assert loss(batch).item() == pytest.approx(0.5 * (fwd + bwd), rel=1e-5)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", ALIGNMENT_LOSSES)
def test_gradients_are_correct_and_reach_encoder_states(name):
    batch = make_batch(dtype=torch.float64, requires_grad=True, seed=5)
    loss = build_alignment_loss(name, H).double()

    def f(src, tgt):
        return loss(
            AlignBatch(
                src,
                tgt,
                batch.src_mask,
                batch.tgt_mask,
                batch.src_idx,
                batch.tgt_idx,
                batch.pair_batch,
                batch.src_hidden_ref,
                batch.src_word_idx,
            )
        )

    assert torch.autograd.gradcheck(f, (batch.src_hidden, batch.tgt_hidden))
    f(batch.src_hidden, batch.tgt_hidden).backward()
    src_grad = batch.src_hidden.grad.norm(dim=-1)  # (B, S)
    tgt_grad = batch.tgt_hidden.grad.norm(dim=-1)
    if name == "sentence_infonce":  # every real token, no pad token
        assert (src_grad[batch.src_mask] > 0).all() and (tgt_grad[batch.tgt_mask] > 0).all()
        assert (src_grad[~batch.src_mask] == 0).all() and (tgt_grad[~batch.tgt_mask] == 0).all()
    else:  # target: exactly the aligned words
        touched = torch.zeros(8, dtype=torch.bool)
        touched[batch.tgt_idx] = True
        assert ((tgt_grad.flatten() > 0) == touched).all()
    for p in loss.parameters():
        assert p.grad is not None and p.grad.norm() > 0


def test_projector_belongs_to_the_loss():
    loss = build_alignment_loss("infonce_strong", 768)
    shapes = [tuple(p.shape) for p in loss.parameters()]
    assert shapes == [(768, 768), (128, 768)]  # no biases
    assert list(build_alignment_loss("l2", 768).parameters()) == []
    assert list(build_alignment_loss("sentence_infonce", 768).parameters()) == []


def test_no_pairs_gives_zero_loss_that_backpropagates():
    batch = make_batch(requires_grad=True)
    empty = make_align_batch(
        batch.src_hidden,
        batch.tgt_hidden,
        batch.src_mask,
        batch.tgt_mask,
        [[], []],
        [[1, 2], [1]],
        [[1, 2], [1, 2]],
    )
    for name in ("infonce_weak", "infonce_strong"):
        value = build_alignment_loss(name, H)(empty)
        value.backward()
        assert value.item() == 0.0


# ----------------------------------------------------------------------------- bounds


@pytest.mark.parametrize("p", [3, 8])
def test_perfect_alignment_reaches_the_minimum(p):
    # Translations share a one-hot vector; different words are orthogonal (cos 0).
    eye = torch.eye(p, dtype=torch.float64)  # e^-10 terms need double precision
    src, tgt = eye[None], eye[None].clone()  # (1, P, P)
    mask = torch.ones(1, p, dtype=torch.bool)
    batch = make_align_batch(
        src, tgt, mask, mask, [[(i, i) for i in range(p)]], [list(range(p))], [list(range(p))]
    )
    weak = build_alignment_loss("infonce_weak", p, projector=False)(batch).item()
    strong = build_alignment_loss("infonce_strong", p, projector=False)(batch).item()
    # Positive logit 1/τ = 10, every negative 0: the minimum up to e^-10 terms.
    assert weak == pytest.approx(math.log1p((p - 1) * math.exp(-1 / TAU)), rel=1e-4)
    assert strong == pytest.approx(math.log1p((2 * p - 2) * math.exp(-1 / TAU)), rel=1e-4)
    assert 0 < weak < strong < 1e-3
    # A wrong pairing (a cyclic shift) costs about 1/τ per anchor.
    shifted = make_align_batch(
        src,
        tgt,
        mask,
        mask,
        [[(i, (i + 1) % p) for i in range(p)]],
        [list(range(p))],
        [list(range(p))],
    )
    assert build_alignment_loss("infonce_weak", p, projector=False)(shifted).item() > 9.0
    assert build_alignment_loss("l2", p, anchor_weight=0.0)(batch).item() == 0.0


# ----------------------------------------------------------------------------- interface


def test_build_rejects_unknown_names_and_options():
    assert ALIGNMENT_LOSSES == ("infonce_strong", "infonce_weak", "l2", "sentence_infonce")
    with pytest.raises(ConfigError, match="infonce_strong, infonce_weak, l2, sentence_infonce"):
        build_alignment_loss("cosine", H)
    with pytest.raises(ConfigError, match="temperature"):
        build_alignment_loss("l2", H, temperature=0.1)
    with pytest.raises(ConfigError, match="temperature must be positive"):
        build_alignment_loss("infonce_weak", H, temperature=0.0)
    loss = build_alignment_loss("infonce_strong", H, temperature=0.5)
    assert loss.temperature == 0.5 and loss.level == "word" and not loss.needs_reference
