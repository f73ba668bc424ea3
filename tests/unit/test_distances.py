"""Distance measures: retrieval, cosines, per-layer states."""

import pytest
import torch

from xlcore.analysis.distances import (
    WordPairSet,
    measure,
    pair_cosines,
    retrieval_p1,
    sentence_states,
    strong_retrieval_p1,
    word_states,
)
from xlcore.device import bf16_supported
from xlcore.encoders import load


def test_retrieval_of_identical_vectors_is_perfect():
    torch.manual_seed(0)
    x = torch.randn(100, 16)
    assert retrieval_p1(x, x.clone()) == 1.0
    # strong: the translation (identical) beats every other same-language vector
    assert strong_retrieval_p1(x, x.clone()) == 1.0


def test_retrieval_of_random_vectors_is_near_chance():
    torch.manual_seed(0)
    n, runs = 200, 20
    scores = [retrieval_p1(torch.randn(n, 64), torch.randn(n, 64)) for _ in range(runs)]
    mean = sum(scores) / runs
    assert mean == pytest.approx(1 / n, abs=3 / n)


def test_strong_retrieval_counts_same_language_neighbours_as_wrong():
    en = torch.tensor([[1.0, 0.0], [0.9, 0.1]])
    x = torch.tensor([[0.0, 1.0], [0.1, 0.9]])
    assert retrieval_p1(en, x) == 0.5  # weak: en0→x1 (closest), en1→x1
    # strong: each English query finds the other English vector first
    assert strong_retrieval_p1(en, x) == 0.0


def test_pair_cosines():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cos, rand = pair_cosines(a, a.clone())
    assert cos == pytest.approx(1.0) and rand == pytest.approx(0.0)


@pytest.fixture(scope="module")
def tiny():
    model, tok = load("tiny-xlmr")
    return model.eval(), tok


def test_sentence_states_shape_and_batch_invariance(tiny):
    model, tok = tiny
    texts = ["a short one", "a much longer sentence with many more words in it", "mid size text"]
    states = sentence_states(model, tok, texts, batch_size=2)
    assert states.shape == (model.config.num_hidden_layers + 1, 3, model.config.hidden_size)
    single = sentence_states(model, tok, texts[1:2], batch_size=1)
    assert torch.allclose(states[:, 1], single[:, 0], atol=1e-5)


def test_word_states_take_first_subwords_and_skip_truncated(tiny):
    model, tok = tiny
    sentences = [["Hello", "world"], ["one", "two", "three", "four", "five", "six"]]
    vecs, kept = word_states(model, tok, sentences, [[1, 0], [0, 5]], max_length=9)
    assert kept == [[True, True], [True, False]]  # word 5 of sentence 2 was truncated
    assert vecs.shape[1] == 3
    enc = tok([sentences[0]], is_split_into_words=True, return_tensors="pt")
    hidden = model(**enc, output_hidden_states=True).hidden_states
    first_of_world = enc.word_ids(0).index(1)
    assert torch.allclose(vecs[-1, 0], hidden[-1][0, first_of_world], atol=1e-5)


def test_measure_returns_every_metric_per_layer(tiny):
    model, tok = tiny
    pairs = WordPairSet(
        [["the", "cat", "sleeps"], ["a", "dog", "runs"]],
        [["die", "Katze", "schläft"], ["ein", "Hund", "läuft"]],
        [[(0, 0), (1, 1), (2, 2)], [(1, 1), (2, 2)]],
    )
    en = ["the cat sleeps", "a dog runs", "birds fly"]
    de = ["die Katze schläft", "ein Hund läuft", "Vögel fliegen"]
    records = measure(
        model, tok, word_pairs={"de": pairs}, parallel={"de": (en, de)}, tatoeba={"de": (en, de)}
    )
    layers = model.config.num_hidden_layers + 1
    word = [r for r in records if r["level"] == "word"]
    sent = [r for r in records if r["level"] == "sentence"]
    assert len(word) == 6 * layers and len(sent) == 5 * layers
    assert all(r["lang"] == "de" for r in records)
    assert {r["n"] for r in word} == {5}
    assert pairs.limited(3).links == [[(0, 0), (1, 1), (2, 2)]]


def test_bf16_states_use_autocast_only_where_native(tiny):
    model, tok = tiny
    texts = ["a short one", "a much longer sentence with many more words in it"]
    fp32 = sentence_states(model, tok, texts)
    bf16 = sentence_states(model, tok, texts, bf16=True)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    if bf16_supported(torch.device("cpu")):
        assert (bf16 - fp32).abs().max() > 1e-6  # computed in bf16
        cos = torch.nn.functional.cosine_similarity(bf16, fp32, dim=-1)
        assert cos.min() > 0.99
    else:
        assert torch.equal(bf16, fp32)  # emulated bf16 is never used


def test_sentence_states_are_masked_means_of_each_layer(tiny):
    model, tok = tiny
    texts = ["one two three four five six", "short"]
    states = sentence_states(model, tok, texts, batch_size=2)
    enc = tok(texts[1:], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc, output_hidden_states=True).hidden_states
    expected = torch.stack([h[0].mean(0) for h in hidden])
    assert torch.allclose(states[:, 1], expected, atol=1e-5)
