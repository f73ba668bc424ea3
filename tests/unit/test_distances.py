"""Distance measures: retrieval, cosines, per-layer states, and the sentences they use."""

import math

import pytest
import torch

from xlcore.analysis.distances import (
    WordPairSet,
    measure,
    sentence_measures,
    sentence_states,
    word_states,
)
from xlcore.analysis.measures import ITEM_METRICS
from xlcore.analysis.neighbours import (
    cross_group_partners,
    derangement,
    pair_cosines,
    retrieval_p1,
    strong_retrieval_p1,
)
from xlcore.data import SIB_LABELS, DataSource
from xlcore.device import bf16_supported
from xlcore.encoders import load
from xlcore.samples import distance_sentences


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


def _cats_and_dogs():
    """Two sentences with five word pairs, and three parallel sentences."""
    pairs = WordPairSet(
        [["the", "cat", "sleeps"], ["a", "dog", "runs"]],
        [["die", "Katze", "schläft"], ["ein", "Hund", "läuft"]],
        [[(0, 0), (1, 1), (2, 2)], [(1, 1), (2, 2)]],
    )
    en = ["the cat sleeps", "a dog runs", "birds fly"]
    de = ["die Katze schläft", "ein Hund läuft", "Vögel fliegen"]
    return pairs, en, de


def test_measure_returns_every_metric_per_layer(tiny):
    model, tok = tiny
    pairs, en, de = _cats_and_dogs()
    records = measure(
        model, tok, word_pairs={"de": pairs}, parallel={"de": (en, de)}, tatoeba={"de": (en, de)}
    ).records
    layers = model.config.num_hidden_layers + 1
    word = [r for r in records if r["level"] == "word"]
    sent = [r for r in records if r["level"] == "sentence"]
    assert len(word) == 6 * layers and len(sent) == 5 * layers
    assert all(r["lang"] == "de" for r in records)
    assert {r["n"] for r in word} == {5}
    assert pairs.limited(3).links == [[(0, 0), (1, 1), (2, 2)]]


def test_items_hold_the_last_layer_values_of_each_item(tiny):
    model, tok = tiny
    pairs, en, de = _cats_and_dogs()
    got = measure(
        model, tok, word_pairs={"de": pairs}, parallel={"de": (en, de)}, tatoeba={"de": (en, de)}
    )
    last = model.config.num_hidden_layers
    means = {r["metric"]: r["value"] for r in got.records if r["layer"] == last}
    items = {r["metric"]: r for r in got.items}
    assert set(items) == set(ITEM_METRICS)
    for metric, r in items.items():
        assert r["layer"] == last and r["lang"] == "de"
        assert sum(r["value"]) / len(r["value"]) == pytest.approx(means[metric], abs=1e-4)
    assert items["cos_pairs"]["cluster"] == [0, 0, 0, 1, 1]  # a word pair's sentence
    assert items["cos"]["cluster"] == [0, 1, 2]
    assert set(items["p1_strong_fwd"]["value"]) <= {0.0, 1.0}
    kept = measure(model, tok, word_pairs={"de": pairs}, parallel={}, tatoeba={}, item_langs=())
    assert kept.records and not kept.items  # per-item values only for the languages asked


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


# ----------------------------------------------------------------------------- issue "Evidence"


def test_retrieving_another_occurrence_of_the_same_pair_is_a_hit():
    # rows 0 and 1 are two occurrences of one (en, x) pair, row 2 another pair
    ids = [0, 0, 1]
    en = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    x = torch.tensor([[0.8, 0.6], [1.0, 0.0], [0.0, 1.0]])
    # rows 0 and 1 each find the other occurrence of their pair: misses by row index
    assert retrieval_p1(en, x) == pytest.approx(1 / 3)
    assert retrieval_p1(x, en) == pytest.approx(1 / 3)
    assert retrieval_p1(en, x, ids) == 1.0
    assert retrieval_p1(x, en, ids) == 1.0
    assert strong_retrieval_p1(en, x, ids) == 1.0
    # strong: the query's own word in another occurrence is neither a hit nor a competitor
    en = torch.tensor([[1.0, 0.0], [0.99, 0.14]])
    x = torch.tensor([[0.6, 0.8], [0.6, 0.8]])
    assert strong_retrieval_p1(en, x) == 0.0  # each finds the other English occurrence
    assert strong_retrieval_p1(en, x, [0, 0]) == 1.0


def test_word_retrieval_scores_repeated_pairs_by_pair(tiny):
    model, tok = tiny
    # (Katze, Katze) occurs twice, each en context equal to the *other* occurrence's x context,
    # so by row index every Katze query finds the wrong row; (Hund, Hund) occurs once.
    cat_sleeps, cat_runs = ["Katze", "schläft", "auf", "dem", "Sofa"], ["Katze", "läuft", "weg"]
    dog = ["Hund", "bellt"]
    pairs = WordPairSet([cat_sleeps, cat_runs, dog], [cat_runs, cat_sleeps, dog], [[(0, 0)]] * 3)
    records = measure(model, tok, word_pairs={"de": pairs}, parallel={}, tatoeba={}).records
    p1 = {(r["layer"], r["metric"]): r["value"] for r in records if r["metric"].startswith("p1")}
    assert len(p1) == 4 * (model.config.num_hidden_layers + 1)
    assert set(p1.values()) == {1.0}  # by row index: 2/3 or 1/3 at every layer


def test_random_word_pairs_come_from_other_sentences():
    # rows 0 and 1 share a sentence: roll(1) would pair row 1 with row 0 (cosine 0)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    partners = cross_group_partners([0, 0, 1])
    assert partners[:2].tolist() == [2, 2] and partners[2] in (0, 1)
    # rows 0, 1 meet b2 (cos 0 and 1); row 2 meets b0 or b1 (cos 1/sqrt 2 either way)
    _, rand = pair_cosines(a, b, partners)
    assert rand == pytest.approx((0 + 1 + 2**-0.5) / 3)  # roll(1): (0 + 0 + 2**-0.5) / 3
    assert cross_group_partners([4, 4, 4]).numel() == 0  # one sentence: no random pairs
    assert math.isnan(pair_cosines(a, b, cross_group_partners([4, 4, 4]))[1])


def test_random_word_pairs_of_measure_come_from_other_sentences(tiny):
    model, tok = tiny
    sentences = [["Katze", "Hund"], ["Vogel"]]  # rows K, H (sentence 0) and V (sentence 1)
    pairs = WordPairSet(sentences, sentences, [[(0, 0), (1, 1)], [(0, 0)]])
    records = measure(model, tok, word_pairs={"de": pairs}, parallel={}, tatoeba={}).records
    vecs, _ = word_states(model, tok, sentences, [[0, 1], [0]])
    for layer in range(vecs.shape[0]):
        v = torch.nn.functional.normalize(vecs[layer], dim=-1)
        c = (v @ v.T).tolist()
        # K and H meet V; V meets K or H. roll(1) would pair H with K: (c02 + c10 + c21) / 3
        allowed = [(c[0][2] + c[1][2] + c[2][k]) / 3 for k in (0, 1)]
        got = next(
            r["value"] for r in records if r["layer"] == layer and r["metric"] == "cos_random"
        )
        assert min(abs(got - x) for x in allowed) < 1e-5, (layer, got, allowed)


def test_random_sentence_pairs_are_a_seeded_derangement_not_the_neighbour():
    n = 20
    b = torch.eye(n)
    a = b.roll(1, dims=0)  # a_i is b_{i-1}: the file-order neighbour matches exactly
    records = sentence_measures(a[None], b[None])
    rand = next(r["value"] for r in records if r["metric"] == "cos_random")
    assert rand < 0.5  # roll(1) pairs every sentence with its neighbour: 1.0
    perm = derangement(n, seed=0)
    assert sorted(perm.tolist()) == list(range(n))  # a permutation: each sentence used once
    assert not (perm == torch.arange(n)).any()  # never the sentence's own translation
    assert torch.equal(perm, derangement(n, seed=0)) and not torch.equal(perm, derangement(n, 1))
    # cos_random counts the partners that happen to be the neighbour
    assert rand == pytest.approx(float((perm == torch.arange(n).roll(1)).float().mean()))


SIB_SIZES = (8, 6, 4, 4, 3, 3, 2)  # rows per topic, in the order of SIB_LABELS
SIB_TOPICS = [label for label, size in zip(SIB_LABELS, SIB_SIZES, strict=True) for _ in range(size)]


@pytest.fixture
def sorted_root(tmp_path) -> DataSource:
    """SIB-200 test files sorted by topic (as the real ones are; ids 0-29, German in reverse
    order) and a 40-row Tatoeba file."""
    for lang, ids in (("en", range(30)), ("de", range(29, -1, -1))):
        path = tmp_path / "sib200" / lang / "test.tsv"
        path.parent.mkdir(parents=True)
        lines = [f"{i}\t{SIB_TOPICS[i]}\t{lang} {i}\n" for i in ids]
        path.write_text("index_id\tcategory\ttext\n" + "".join(lines))
    (tmp_path / "tatoeba").mkdir()
    lines = [f"en {i}\tde {i}\n" for i in range(40)]
    (tmp_path / "tatoeba" / "de-en.tsv").write_text("en\tde\n" + "".join(lines))
    return DataSource(tmp_path, "explicit")


def _ids(texts: list[str]) -> list[int]:
    return [int(t.split()[1]) for t in texts]


def test_distance_sentences_are_seeded_samples_stratified_by_topic(sorted_root):
    parallel, tatoeba = distance_sentences(sorted_root, "en", ("de",), 10, seed=0)
    en, de = parallel["de"]
    assert _ids(en) == _ids(de)  # translations of each other
    counts = [sum(SIB_TOPICS[i] == label for i in _ids(en)) for label in SIB_LABELS]
    # 10 of 30 by largest remainder: 8/3, 2, 4/3, 4/3, 1, 1, 2/3 (the first 10 rows: 8, 2, 0...)
    assert counts == [3, 2, 1, 1, 1, 1, 1]
    t_en, t_de = tatoeba["de"]
    assert _ids(t_en) == _ids(t_de) and len(set(_ids(t_en))) == 10
    assert max(_ids(t_en)) >= 10  # not the file's first 10 rows
    again = distance_sentences(sorted_root, "en", ("de",), 10, seed=0)
    assert again == (parallel, tatoeba)  # seeded: the same sample every run
    other = distance_sentences(sorted_root, "en", ("de",), 10, seed=1)
    assert other[0]["de"] != parallel["de"] and other[1]["de"] != tatoeba["de"]
