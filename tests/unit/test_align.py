"""Word pairs: ArgMax/IterMax by hand, batched == reference, hygiene, bare "▁", split_words."""

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

from xlcore.align import (
    _states_at,
    argmax_align,
    batched_align,
    encode_parallel,
    extract_word_pairs,
    filter_pairs,
    itermax_align,
    similarity,
)
from xlcore.errors import ConfigError
from xlcore.losses import alignment_forward, build_alignment_loss, make_align_batch
from xlcore.tokens import BARE_PIECE, split_words, word_start_index

CORPUS = [
    "the cat sat on the mat",
    "the dog saw the cat",
    "a cat and a dog",
    "die Katze sitzt auf der Matte",
    "der Hund sah die Katze",
    "eine Katze und ein Hund",
    "f(x) und g(y) sind Funktionen",
    "f(x) and g(y) are functions",
    "我们看见了猫。",
    "猫坐在垫子上。",
]


# ----------------------------------------------------------------------------- fixtures


def build_tokenizer():
    """A tiny XLM-R-style tokenizer: Unigram + Metaspace, trained offline on CORPUS."""
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=100, special_tokens=specials, unk_token="<unk>", show_progress=False
    )
    backend.train_from_iterator(CORPUS * 20, trainer=trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def tiny_model(tokenizer, dropout=0.0):
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(0)
    return XLMRobertaModel(config, add_pooling_layer=False)


def first_content_pieces(tokenizer, words):
    """Per word, the first piece that is not a bare "▁" (an independent, plain re-derivation)."""
    pieces = [
        tokenizer([w], is_split_into_words=True, add_special_tokens=False).tokens() for w in words
    ]
    return [next((p for p in ps if p != BARE_PIECE), ps[0]) for ps in pieces]


# ----------------------------------------------------------------------------- ArgMax / IterMax


def test_argmax_recovers_a_permutation():
    perm = [2, 0, 3, 1]
    rng = np.random.default_rng(0)
    sim = rng.uniform(0.0, 0.5, size=(4, 4))
    for i, j in enumerate(perm):
        sim[i, j] = 0.9
    assert argmax_align(sim) == [(0, 2), (1, 0), (2, 3), (3, 1)]
    assert itermax_align(sim) == [(0, 2), (1, 0), (2, 3), (3, 1)]


def test_argmax_needs_row_and_column_to_agree():
    # Row 0 prefers column 0, but column 0 prefers row 1: row 0 stays unaligned.
    sim = np.array([[0.90, 0.80], [0.95, 0.10]])
    assert argmax_align(sim) == [(1, 0)]


ITER = np.array(
    [
        [0.90, 0.10, 0.10, 0.10],
        [0.80, 0.75, 0.10, 0.10],
        [0.10, 0.10, 0.90, 0.10],
        [0.10, 0.10, 0.10, 0.90],
    ]
)


def test_itermax_second_round_by_hand():
    # Round 1: row 1's argmax is column 0, which row 0 holds -> no link for row 1 or column 1.
    assert argmax_align(ITER) == [(0, 0), (2, 2), (3, 3)]
    # Round 2: column 0 is aligned, so S[1,0] is weighted 0.9*0.80 = 0.72 < 0.75 = S[1,1] (row 1
    # and column 1 both free: weight 1). Row 1 -> column 1, and column 1's best is row 1.
    assert itermax_align(ITER) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    # With S[1,1] = 0.70 < 0.72 the second round links (1, 0) instead: one-to-many.
    sim = ITER.copy()
    sim[1, 1] = 0.70
    assert itermax_align(sim) == [(0, 0), (1, 0), (2, 2), (3, 3)]
    # ... which the one-to-one filter then removes together with (0, 0).
    assert filter_pairs(itermax_align(sim), list("abcd"), list("wxyz")) == [(2, 2), (3, 3)]
    # More rounds cannot add anything here: every row is aligned after round 2.
    assert itermax_align(ITER, max_count=5) == itermax_align(ITER)


def test_itermax_skips_tiny_matrices_like_simalign():
    sim = np.array([[0.9, 0.1, 0.1], [0.8, 0.75, 0.1]])  # min(m, n) = 2: ArgMax only
    assert itermax_align(sim) == argmax_align(sim) == [(0, 0)]


def _padded_batch(mats, fill):
    m = max(s.shape[0] for s in mats)
    n = max(s.shape[1] for s in mats)
    sim = torch.full((len(mats), m, n), fill, dtype=torch.float32)
    src_mask = torch.zeros(len(mats), m, dtype=torch.bool)
    tgt_mask = torch.zeros(len(mats), n, dtype=torch.bool)
    for b, s in enumerate(mats):
        sim[b, : s.shape[0], : s.shape[1]] = torch.from_numpy(s)
        src_mask[b, : s.shape[0]] = True
        tgt_mask[b, : s.shape[1]] = True
    return sim, src_mask, tgt_mask


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("max_count", [2, 3])
def test_batched_equals_reference_on_random_padded_matrices(ties, max_count):
    rng = np.random.default_rng(1 + ties)
    mats = []
    for _ in range(40):
        m, n = rng.integers(1, 12, size=2)
        s = rng.integers(0, 4, size=(m, n)) / 4 if ties else rng.uniform(size=(m, n))
        mats.append(s.astype(np.float32))
    # Junk larger than any real value in the padding: the masks must hide it.
    sim, src_mask, tgt_mask = _padded_batch(mats, fill=5.0)
    for method, ref in (("argmax", argmax_align), ("itermax", itermax_align)):
        links = batched_align(sim, src_mask, tgt_mask, method, max_count=max_count)
        assert not links[~(src_mask[:, :, None] & tgt_mask[:, None, :])].any()
        for b, s in enumerate(mats):
            got = [tuple(x) for x in links[b].nonzero().tolist()]
            want = ref(s) if method == "argmax" else ref(s, max_count=max_count)
            assert got == want, (method, b)
    n_iter = batched_align(sim, src_mask, tgt_mask, "itermax", max_count=max_count).sum()
    n_arg = batched_align(sim, src_mask, tgt_mask, "argmax").sum()
    assert n_iter > n_arg  # the comparison is not vacuous: IterMax did add links


def test_filter_drops_identical_words_and_keeps_one_to_one():
    src = ["Berlin", "is", "big", "."]
    tgt = ["Berlin", "ist", "groß", "."]
    links = [(0, 0), (1, 1), (2, 1), (2, 2), (3, 3)]
    # (0,0) and (3,3) are identical words; "ist" (1) and "big" (2) have two links each.
    assert filter_pairs(links, src, tgt) == []
    assert filter_pairs([(0, 0), (1, 1), (2, 2)], src, tgt) == [(1, 1), (2, 2)]
    # Case matters: "Die" and "die" are different surface words.
    assert filter_pairs([(0, 0)], ["Die"], ["die"]) == [(0, 0)]


def test_unknown_method_and_layer_are_config_errors(tokenizer):
    model = tiny_model(tokenizer)
    with pytest.raises(ConfigError, match="argmax, itermax"):
        extract_word_pairs(model, tokenizer, [(["a"], ["b"])], layer=0, method="match")
    with pytest.raises(ConfigError, match="2-layer"):
        extract_word_pairs(model, tokenizer, [(["a"], ["b"])], layer=8)


# ----------------------------------------------------------------------------- end to end


def test_bare_piece_is_skipped_end_to_end(tokenizer):
    src = ["cat", "dog", "mat", "x"]
    tgt = ["Katze", "Hund", "Auto", "x"]
    enc = tokenizer([src, tgt], is_split_into_words=True)
    # Precondition: the tiny tokenizer puts a bare "▁" before these words.
    assert sum(tok == BARE_PIECE for tok in enc.tokens(0)) >= 2
    src_first = first_content_pieces(tokenizer, src)
    tgt_first = first_content_pieces(tokenizer, tgt)
    assert BARE_PIECE not in src_first + tgt_first
    assert len(set(src_first[:3] + tgt_first[:3])) == 6

    # Layer 0 with zero position/type embeddings depends on the token id alone. Give each
    # source word's first *content* piece the embedding of a target word's (a permutation),
    # so only the first-contentful-sub-word convention can find it; the bare "▁" is shared.
    model = tiny_model(tokenizer)
    emb = model.embeddings
    with torch.no_grad():
        emb.position_embeddings.weight.zero_()
        emb.token_type_embeddings.weight.zero_()
        perm = {0: 2, 1: 0, 2: 1}
        for i, j in perm.items():
            src_id = tokenizer.convert_tokens_to_ids(src_first[i])
            tgt_id = tokenizer.convert_tokens_to_ids(tgt_first[j])
            emb.word_embeddings.weight[src_id] = emb.word_embeddings.weight[tgt_id]
    starts = encode_parallel(tokenizer, [src], [tgt], max_length=64).src_starts[0]
    assert [enc.tokens(0)[p] for p in starts] == src_first

    pairs = extract_word_pairs(model, tokenizer, [(src, tgt)], layer=0, method="argmax")
    # (3, 3) links "x" to "x" (same vector) and is dropped as an identical word.
    assert pairs == [[(0, 2), (1, 0), (2, 1)]]
    assert extract_word_pairs(model, tokenizer, [(src, tgt)], layer=0) == pairs


def reference_pairs(model, tokenizer, src, tgt, layer, method, max_length):
    """One sentence pair at a time, positions found by a plain loop over the pieces."""

    def vectors(words):
        enc = tokenizer(
            [words],
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states[layer][0]
        first = {}
        for pos, (wid, tok) in enumerate(zip(enc.word_ids(0), enc.tokens(0), strict=True)):
            if wid is not None and wid not in first and tok != BARE_PIECE:
                first[wid] = pos
        words_kept = sorted(first)
        return hidden[[first[w] for w in words_kept]], words_kept

    xs, src_kept = vectors(src)
    xt, tgt_kept = vectors(tgt)
    sim = similarity(xs, xt)
    raw = itermax_align(sim) if method == "itermax" else argmax_align(sim)
    return filter_pairs([(src_kept[i], tgt_kept[j]) for i, j in raw], src, tgt)


@pytest.mark.parametrize("method", ["argmax", "itermax"])
def test_batched_extraction_equals_per_pair_reference(tokenizer, method):
    pairs = [
        (s.split(), t.split())
        for s, t in [
            ("the cat sat on the mat", "die Katze sitzt auf der Matte"),
            ("the dog saw the cat", "der Hund sah die Katze"),
            ("a cat and a dog", "eine Katze und ein Hund"),
            ("f(x) and g(y) are functions", "f(x) und g(y) sind Funktionen"),
            ("the cat", "我 们 看 见 了 猫 。"),
            ("the dog saw the cat on the mat and the dog", "der Hund sah die Katze auf"),
            ("", "der Hund"),
        ]
    ]
    max_length = 16  # truncates the long sentences
    model = tiny_model(tokenizer, dropout=0.3)
    model.train()
    got = extract_word_pairs(
        model, tokenizer, pairs, layer=2, method=method, batch_size=3, max_length=max_length
    )
    assert model.training  # mode restored
    model.eval()
    want = [reference_pairs(model, tokenizer, s, t, 2, method, max_length) for s, t in pairs]
    assert got == want
    assert sum(map(len, got)) >= 5  # non-trivial
    assert got[-1] == []
    for (s, t), links in zip(pairs, got, strict=True):
        assert len({i for i, _ in links}) == len({j for _, j in links}) == len(links)
        assert all(s[i] != t[j] for i, j in links)
    # Words cut off by truncation never appear.
    enc = encode_parallel(tokenizer, [pairs[5][0]], [pairs[5][1]], max_length)
    cut = {w for w, p in enumerate(enc.src_starts[0]) if p < 0}
    assert cut and not cut & {i for i, _ in got[5]}


def test_extraction_runs_only_the_layers_up_to_the_extraction_layer(tokenizer):
    model = tiny_model(tokenizer).eval()
    enc = encode_parallel(
        tokenizer, [["the", "cat"], ["a", "dog", "and", "a", "cat"]], [[]] * 2, 16
    )
    stack = list(model.encoder.layer)
    ran = []
    for i, module in enumerate(stack):
        module.register_forward_hook(lambda *_, i=i: ran.append(i))
    for layer in (0, 1, 2, -1):
        ran.clear()
        with torch.no_grad():
            got = _states_at(model, enc.src, layer)
        assert ran == list(range(layer % 3))  # layers above the extraction layer never run
        with torch.no_grad():
            full = model(**enc.src, output_hidden_states=True).hidden_states[layer]
        assert torch.equal(got, full)  # bit-identical to the full pass
        assert list(model.encoder.layer) == stack  # the stack is restored


def test_alignment_forward_matches_a_hand_built_batch(tokenizer):
    model = tiny_model(tokenizer)
    src = [["the", "cat", "sat"], ["a", "dog"]]
    tgt = [["die", "Katze", "sitzt"], ["ein", "Hund"]]
    links = [[(1, 1), (2, 2)], [(0, 0), (1, 1), (5, 0)]]  # (5, 0): no such word -> skipped
    loss = build_alignment_loss("infonce_weak", 32)
    value = alignment_forward(model, loss, tokenizer, src, tgt, links, layer=-1, max_length=32)

    enc = encode_parallel(tokenizer, src, tgt, 32)
    hs = model(**enc.src).last_hidden_state
    ht = model(**enc.tgt).last_hidden_state
    batch = make_align_batch(
        hs,
        ht,
        enc.src["attention_mask"],
        enc.tgt["attention_mask"],
        links,
        enc.src_starts,
        enc.tgt_starts,
    )
    s_len, t_len = hs.shape[1], ht.shape[1]
    assert batch.src_idx.tolist() == [
        enc.src_starts[0][1],
        enc.src_starts[0][2],
        s_len + enc.src_starts[1][0],
        s_len + enc.src_starts[1][1],
    ]
    assert batch.tgt_idx.tolist() == [
        enc.tgt_starts[0][1],
        enc.tgt_starts[0][2],
        t_len + enc.tgt_starts[1][0],
        t_len + enc.tgt_starts[1][1],
    ]
    assert batch.pair_batch.tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(value, loss(batch))

    l2 = build_alignment_loss("l2", 32)
    with pytest.raises(ConfigError, match="reference_model"):
        alignment_forward(model, l2, tokenizer, src, tgt, links)
    # With the unchanged model as reference the anchor term is exactly zero.
    anchored = alignment_forward(model, l2, tokenizer, src, tgt, links, reference_model=model)
    h_src, h_tgt = batch.aligned()
    torch.testing.assert_close(anchored, (h_src - h_tgt).pow(2).sum(-1).mean())


# ----------------------------------------------------------------------------- split_words


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "Hello, world! It costs 3.5 dollars (1,000 cents).",
            [
                "Hello",
                ",",
                "world",
                "!",
                "It",
                "costs",
                "3.5",
                "dollars",
                "(",
                "1,000",
                "cents",
                ")",
                ".",
            ],
        ),
        (
            "Er sagte: „Wir ändern das.“",
            ["Er", "sagte", ":", "„", "Wir", "ändern", "das", ".", "“"],
        ),
        ("敏捷的棕色狐狸。", ["敏", "捷", "的", "棕", "色", "狐", "狸", "。"]),
        ("iPhone的价格是3.5元", ["iPhone", "的", "价", "格", "是", "3.5", "元"]),
        (
            "東京に行きます。ラーメン！",
            ["東", "京", "に", "行", "き", "ま", "す", "。", "ラ", "ー", "メ", "ン", "！"],
        ),
        ("مرحبا، كيف حالك؟", ["مرحبا", "،", "كيف", "حالك", "؟"]),
        ("  \t ", []),
    ],
)
def test_split_words(text, words):
    assert split_words(text) == words


def test_word_left_with_only_a_bare_piece_counts_as_truncated(tokenizer):
    words = "the dog saw the cat on the mat and the dog".split()
    found = 0
    for max_length in range(4, 16):
        enc = encode_parallel(tokenizer, [words], [words], max_length)
        tokens = enc.src.tokens(0)
        plain = word_start_index(enc.src.word_ids(0), tokens, len(words))
        for p, q in zip(plain, enc.src_starts[0], strict=True):
            if p >= 0 and tokens[p] == BARE_PIECE:  # only the word's "▁" survived truncation
                assert q == -1
                found += 1
            else:
                assert q == p
    assert found > 0  # the case occurred
