"""Data readers, the language-code scheme, the data-root choice and the built-in sample corpus."""

import hashlib
import os
import re
from pathlib import Path

import pytest

from xlcore import data, languages
from xlcore.data import (
    SIB_LABELS,
    DataSource,
    ParallelPair,
    available_languages,
    heldout_split,
    load_parallel,
    load_pos,
    load_sib,
    load_tatoeba,
    read_conllu,
    read_tsv,
    resolve_source,
)
from xlcore.errors import ConfigError, DataError
from xlcore.languages import iso_code
from xlcore.paths import SAMPLE_ROOT
from xlcore.readers import UPOS, TaggedSentence, checksums, file_checksum

SAMPLE = DataSource(SAMPLE_ROOT, "sample")
SAMPLE_LANGS = ["ar", "de", "en", "ru", "zh"]


def token(i, form, upos, misc="_"):
    return f"{i}\t{form}\t_\t{upos}\t_\t_\t0\tdep\t_\t{misc}"


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def raises_at(exc_info, path: Path, line: int) -> None:
    """The error message names the file and the line as ``name:line``."""
    message = str(exc_info.value)
    assert f"{path.name}:{line}:" in message, message


# ---------------------------------------------------------------------------------------------
# CoNLL-U


GOOD_CONLLU = [
    "# sent_id = 1",
    "# text = Zum Haus.",
    "1-2\tZum\t_\t_\t_\t_\t_\t_\t_\t_",
    token(1, "Zu", "ADP"),
    token(2, "dem", "DET"),
    token(3, "Haus", "NOUN", "SpaceAfter=No"),
    "3.1\tist\t_\t_\t_\t_\t_\t_\t2:dep\t_",
    token(4, ".", "PUNCT"),
    "",
    "# sent_id = 2",
    token(1, "Ja", "INTJ"),
]


def test_read_conllu_skips_multiword_ranges_and_empty_nodes(tmp_path):
    path = write(tmp_path / "a.conllu", GOOD_CONLLU)
    assert read_conllu(path) == [
        TaggedSentence(("Zu", "dem", "Haus", "."), ("ADP", "DET", "NOUN", "PUNCT")),
        TaggedSentence(("Ja",), ("INTJ",)),
    ]


@pytest.mark.parametrize(
    "bad_line, fragment",
    [
        ("4\t.\t_\tPUNCT\t_\t_\t0\tdep\t_", "10 tab-separated columns, got 9"),
        (token(4, ".", "PUNC"), "UPOS 'PUNC'"),
        (token("x", ".", "PUNCT"), "ID 'x'"),
        (token(5, ".", "PUNCT"), "word id 5 out of order"),
        ("4 . _ PUNCT _ _ 0 dep _ _", "got 1"),  # spaces instead of tabs
    ],
)
def test_read_conllu_names_file_and_line(tmp_path, bad_line, fragment):
    lines = list(GOOD_CONLLU)
    lines[7] = bad_line  # line 8 of the file
    path = write(tmp_path / "bad.conllu", lines)
    with pytest.raises(DataError) as exc_info:
        read_conllu(path)
    raises_at(exc_info, path, 8)
    assert fragment in str(exc_info.value)


def test_read_conllu_missing_blank_line_is_caught(tmp_path):
    lines = [token(1, "Ja", "INTJ"), token(2, ".", "PUNCT"), token(1, "Nein", "INTJ")]
    path = write(tmp_path / "merged.conllu", lines)
    with pytest.raises(DataError, match="blank line missing") as exc_info:
        read_conllu(path)
    raises_at(exc_info, path, 3)


def test_read_conllu_bad_bytes_and_empty_file(tmp_path):
    path = tmp_path / "latin1.conllu"
    path.write_bytes(
        ("\n".join(GOOD_CONLLU[:4]) + "\n" + token(2, "Stra\xdfe", "NOUN")).encode("latin-1")
    )
    with pytest.raises(DataError, match="not valid UTF-8") as exc_info:
        read_conllu(path)
    raises_at(exc_info, path, 5)
    empty = tmp_path / "empty.conllu"
    empty.write_text("")
    with pytest.raises(DataError, match="no sentences"):
        read_conllu(empty)
    with pytest.raises(DataError, match="file not found"):
        read_conllu(tmp_path / "missing.conllu")


def test_read_conllu_maps_conllu_package_errors_to_file_and_line(tmp_path, monkeypatch):
    import conllu
    from conllu.exceptions import ParseException

    real = conllu.parse_incr

    def failing_on_second_sentence(f, **kwargs):
        sentences = real(f, **kwargs)
        yield next(sentences)
        raise ParseException("Invalid line format")

    monkeypatch.setattr(conllu, "parse_incr", failing_on_second_sentence)
    path = write(tmp_path / "b.conllu", GOOD_CONLLU)
    with pytest.raises(DataError, match="Invalid line format") as exc_info:
        read_conllu(path)
    raises_at(exc_info, path, 10)  # the second sentence starts on line 10


def test_read_conllu_cache_follows_file_changes(tmp_path):
    path = write(tmp_path / "a.conllu", GOOD_CONLLU)
    first = read_conllu(path)
    assert read_conllu(path) == first
    write(path, GOOD_CONLLU[-2:] + [token(2, "danke", "INTJ")])
    assert read_conllu(path) == [TaggedSentence(("Ja", "danke"), ("INTJ", "INTJ"))]


# ---------------------------------------------------------------------------------------------
# TSV


def test_read_tsv_takes_quotes_literally(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text('en\tde\n"Hi," he said.\t"Hallo", sagte er.\nNA\tnull\nplain\ttext\n')
    rows = read_tsv(path, ["en", "de"])
    assert rows == [
        ('"Hi," he said.', '"Hallo", sagte er.'),
        ("NA", "null"),
        ("plain", "text"),
    ]


def test_read_tsv_unbalanced_quote_does_not_swallow_lines(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text('id\ttext\n1\t"open quote\n2\tnext line\n3\tlast"\n')
    assert read_tsv(path, ("id", "text")) == [
        ("1", '"open quote'),
        ("2", "next line"),
        ("3", 'last"'),
    ]


@pytest.mark.parametrize(
    "content, line, fragment",
    [
        ("", 1, "empty file"),
        ("en\tfr\nhello\tbonjour\n", 1, "header is"),
        ("en\tde\nhello\thallo\nmissing column\n", 3, "expected 2 tab-separated fields"),
        ("en\tde\nhello\thallo\n\nbye\ttschüss\n", 3, "got 0"),
        ("en\tde\na\tb\tc\n", 2, "got 3"),
    ],
)
def test_read_tsv_names_file_and_line(tmp_path, content, line, fragment):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(DataError) as exc_info:
        read_tsv(path, ("en", "de"))
    raises_at(exc_info, path, line)
    assert fragment in str(exc_info.value)


# ---------------------------------------------------------------------------------------------
# Loaders on a small data root


@pytest.fixture
def root(tmp_path) -> DataSource:
    base = tmp_path / "root"
    for lang in ("fr", "de"):
        write(base / f"ud/{lang}/test.conllu", GOOD_CONLLU)
    write(base / "ud/fr/dev.conllu", GOOD_CONLLU)
    write(
        base / "sib200/de/test.tsv",
        ["index_id\tcategory\ttext", "7\ttravel\tA trip.", "9\tsports\tA match."],
    )
    write(base / "parallel/en-de.tsv", ["id\ten\tde", "a1\tHello.\tHallo.", "a2\tBye.\tTschüss."])
    write(base / "tatoeba/de-en.tsv", ["en\tde", "Yes.\tJa."])
    return DataSource(base, "explicit")


def test_loaders_read_a_data_root(root):
    dev = load_pos("fr", "dev", root)
    tags = [UPOS.index(t) for t in ("ADP", "DET", "NOUN", "PUNCT")]
    assert dev[0] == {"tokens": ["Zu", "dem", "Haus", "."], "upos": tags}
    assert dev.features["upos"].feature.names == list(UPOS)  # the tags decode by name
    one = load_pos("fr", "test", root, limit=1)
    assert len(one) == 1 and one[0] in load_pos("fr", "test", root).to_list()
    assert load_sib("de", "test", root).to_list() == [
        {"index_id": "7", "category": "travel", "text": "A trip."},
        {"index_id": "9", "category": SIB_LABELS[3], "text": "A match."},
    ]
    assert load_parallel("de", root) == [
        ParallelPair("a1", "Hello.", "Hallo."),
        ParallelPair("a2", "Bye.", "Tschüss."),
    ]
    assert load_tatoeba("de", root) == [("Yes.", "Ja.")]
    assert available_languages("pos", source=root) == ["de", "fr"]
    assert available_languages("pos", "dev", root) == ["fr"]
    assert available_languages("parallel", source=root) == ["de"]


def test_unknown_language_lists_available_ones(root):
    with pytest.raises(DataError) as exc_info:
        load_pos("xx", "test", root)
    message = str(exc_info.value)
    assert "unknown language 'xx' for POS (UD) test" in message
    assert message.endswith("de, fr")
    with pytest.raises(DataError, match="available in .*: fr$"):
        load_pos("it", "dev", root)


def test_missing_split_names_existing_splits(root):
    with pytest.raises(DataError, match=r"no 'train' split for 'de'.*'de' has: test$"):
        load_pos("de", "train", root)
    with pytest.raises(DataError, match="'fr' has: dev, test$"):
        load_pos("fr", "train", root)


def test_bad_task_or_split_is_a_config_error(root):
    with pytest.raises(ConfigError, match="unknown task 'ner'"):
        available_languages("ner", source=root)
    with pytest.raises(ConfigError, match="unknown split 'validation'"):
        load_pos("fr", "validation", root)
    with pytest.raises(ConfigError, match="no splits"):
        available_languages("parallel", "test", root)


def test_sib_unknown_category_names_line(root):
    path = write(
        root.root / "sib200/de/dev.tsv",
        ["index_id\tcategory\ttext", "1\ttravel\tGo.", "2\tweather\tRain."],
    )
    with pytest.raises(DataError, match="unknown category 'weather'") as exc_info:
        load_sib("de", "dev", root)
    raises_at(exc_info, path, 3)


def test_parallel_empty_side_or_file(root):
    path = write(root.root / "parallel/en-fr.tsv", ["id\ten\tfr", "b1\tHi.\tSalut.", "b2\tOk.\t "])
    with pytest.raises(DataError, match="empty sentence") as exc_info:
        load_parallel("fr", root)
    raises_at(exc_info, path, 3)
    write(path, ["id\ten\tfr"])
    with pytest.raises(DataError, match="no sentence pairs"):
        load_parallel("fr", root)
    write(path, ["id\ten\tfr", "b1\tHi.\tSalut.", "b1\tOk.\tOk."])
    with pytest.raises(DataError, match="duplicate id 'b1'"):
        load_parallel("fr", root)


# ---------------------------------------------------------------------------------------------
# Held-out split


def pairs(n: int) -> list[ParallelPair]:
    return [ParallelPair(f"s{i:04d}", f"e{i}", f"x{i}") for i in range(1, n + 1)]


def test_heldout_split_without_documents_takes_last_ids(root):
    train, heldout = heldout_split(list(reversed(pairs(20))), 0.1, source=root)
    assert [p.id for p in heldout] == ["s0020", "s0019"]  # input order kept
    assert len(train) == 18 and not {p.id for p in train} & {p.id for p in heldout}
    assert heldout_split(pairs(20), 0.0, source=root) == (pairs(20), [])
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        heldout_split(pairs(3), 1.0, source=root)


def test_heldout_split_keeps_documents_whole(root):
    docs = {f"s{i:04d}": f"doc{(i - 1) // 5}" for i in range(1, 41)}  # 8 documents of 5
    write(
        root.root / data.DOCUMENT_IDS_FILE,
        ["id\tdocument_id", *(f"{k}\t{v}" for k, v in docs.items())],
    )
    train, heldout = heldout_split(pairs(40), 0.1, source=root)
    assert len(heldout) == 5  # one whole document reaches the 4 wanted pairs
    assert len({docs[p.id] for p in heldout}) == 1
    assert not {docs[p.id] for p in train} & {docs[p.id] for p in heldout}
    assert heldout_split(pairs(40), 0.1, source=root) == (train, heldout)
    with pytest.raises(DataError, match="no document id"):
        heldout_split(pairs(41), 0.1, source=root)


# ---------------------------------------------------------------------------------------------
# Checksums and codes


def test_file_checksum_is_sha256_and_follows_changes(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"abc")
    assert file_checksum(path) == hashlib.sha256(b"abc").hexdigest()
    path.write_bytes(b"abcd")
    os.utime(path, ns=(1, 1))
    assert file_checksum(path) == hashlib.sha256(b"abcd").hexdigest()
    assert checksums([path]) == {str(path): hashlib.sha256(b"abcd").hexdigest()}


def test_language_codes_map_to_iso_639_1():
    assert len(languages.LANGUAGES) == 28
    assert (
        set(languages.FLORES_CODES)
        == set(languages.LASER_CODES)
        == set(languages.NTREX_CODES)
        == set(languages.LANGUAGES)
    )
    codes = ("zho_Hans", "cmn", "zho-CN", "zh", "pes", "fas", "arb", "ara")
    assert [iso_code(c) for c in codes] == ["zh"] * 4 + ["fa"] * 2 + ["ar"] * 2
    with pytest.raises(DataError, match="ISO 639-1"):
        iso_code("klingon")
    assert UPOS == tuple(sorted(UPOS)) and len(UPOS) == 17
    assert SIB_LABELS[0] == "science/technology" and len(SIB_LABELS) == 7


# ---------------------------------------------------------------------------------------------
# Choosing the data root


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("XLCORE_DATA", raising=False)
    monkeypatch.setenv("XLCORE_CACHE", str(tmp_path / "cache"))
    return monkeypatch


def test_resolve_source_precedence(clean_env, root, tmp_path):
    with pytest.raises(DataError) as exc_info:  # the sample corpus only when asked for
        resolve_source()
    assert "set XLCORE_DATA to a data root" in str(exc_info.value)
    assert "`make book DATA=sample`" in str(exc_info.value)
    clean_env.setenv("XLCORE_DATA", "sample")
    source = resolve_source()
    assert source == DataSource(SAMPLE_ROOT, "sample", "XLCORE_DATA=sample")
    assert source.describe() == "the built-in sample corpus (XLCORE_DATA=sample)"
    clean_env.delenv("XLCORE_DATA")

    downloaded = tmp_path / "cache" / "data"
    write(downloaded / "sib200/de/test.tsv", ["index_id\tcategory\ttext", "1\ttravel\tGo."])
    assert resolve_source() == DataSource(downloaded, "download")

    clean_env.setenv("XLCORE_DATA", str(root.root))
    source = resolve_source()
    assert source == DataSource(root.root, "XLCORE_DATA")
    assert source.describe() == f"real data from {root.root} (XLCORE_DATA)"

    assert resolve_source(downloaded) == DataSource(downloaded, "explicit")


def test_resolve_source_missing_roots_are_errors(clean_env, tmp_path):
    clean_env.setenv("XLCORE_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"XLCORE_DATA=.*nowhere.* does not exist; point it"):
        resolve_source()
    with pytest.raises(DataError, match="does not exist"):
        resolve_source(tmp_path / "also-nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no ud/"):
        resolve_source(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------
# The built-in sample corpus


def test_sample_corpus_loads_for_every_language():
    assert available_languages("pos", source=SAMPLE) == SAMPLE_LANGS
    assert available_languages("pos", "train", SAMPLE) == ["en"]
    assert available_languages("sib", "train", SAMPLE) == SAMPLE_LANGS
    assert available_languages("parallel", source=SAMPLE) == ["ar", "de", "ru", "zh"]
    assert available_languages("tatoeba", source=SAMPLE) == ["ar", "de", "ru", "zh"]
    assert [len(load_pos("en", s, SAMPLE)) for s in ("train", "dev", "test")] == [24, 6, 6]
    for lang in SAMPLE_LANGS:
        test = load_pos(lang, "test", SAMPLE)
        assert len(test) == 6 and all(len(s["tokens"]) == len(s["upos"]) > 2 for s in test)
        assert [len(load_sib(lang, s, SAMPLE)) for s in ("train", "dev", "test")] == [21, 7, 7]
        if lang != "en":
            assert len(load_tatoeba(lang, SAMPLE)) == 12
            assert len(load_parallel(lang, SAMPLE)) == 32
    # The German contraction "im" is a multiword token: its two syntactic words are read.
    assert ["in", "dem"] in [w[3:5] for w in load_pos("de", "test", SAMPLE)["tokens"]]


def test_sample_corpus_is_parallel():
    def sent_ids(lang):
        text = (SAMPLE_ROOT / f"ud/{lang}/test.conllu").read_text(encoding="utf-8")
        return re.findall(r"^# sent_id = (\S+)$", text, re.M)

    for lang in SAMPLE_LANGS:
        assert sent_ids(lang) == [f"test-{i}" for i in range(1, 7)]
        for split in ("train", "dev", "test"):
            rows = load_sib(lang, split, SAMPLE).select_columns(["index_id", "category"])
            assert rows[:] == load_sib("en", split, SAMPLE).select_columns(rows.column_names)[:]
    assert set(load_sib("en", "train", SAMPLE)["category"]) == set(SIB_LABELS)
    english = [p.en for p in load_parallel("de", SAMPLE)]
    for lang in ("ru", "ar", "zh"):
        assert [(p.id, p.en) for p in load_parallel(lang, SAMPLE)] == [
            (p.id, p.en) for p in load_parallel("de", SAMPLE)
        ]
    assert not set(load_sib("en", "test", SAMPLE)["text"]) & set(english)
    # ud/en train+dev are the English side of s0001..s0030, token for token.
    ud = [*load_pos("en", "train", SAMPLE)["tokens"], *load_pos("en", "dev", SAMPLE)["tokens"]]
    joined = [
        " ".join(words).replace(" .", ".").replace(" ,", ",").replace(" ?", "?") for words in ud
    ]
    assert joined == english[:30]


def test_sample_manifest_matches_files():
    rows = read_tsv(SAMPLE_ROOT / "MANIFEST.tsv", ("path", "bytes", "sha256", "lines"))
    listed = {path for path, *_ in rows}
    on_disk = {
        p.relative_to(SAMPLE_ROOT).as_posix()
        for p in SAMPLE_ROOT.rglob("*")
        if p.is_file() and p.name != "MANIFEST.tsv" and "__pycache__" not in p.parts
    }
    assert listed == on_disk
    for path, size, sha, lines in rows:
        content = (SAMPLE_ROOT / path).read_bytes()
        assert (len(content), hashlib.sha256(content).hexdigest(), content.count(b"\n")) == (
            int(size),
            sha,
            int(lines),
        )


@pytest.mark.shared_data
def test_real_data_counts_match_the_readme(data_root):
    source = DataSource(data_root, "explicit")
    mr = load_pos("mr", "dev", source)
    assert (len(mr), sum(map(len, mr["tokens"]))) == (46, 438)  # data README, UD table
    assert len(load_sib("fr", "test", source)) == 204
    train, heldout = heldout_split(load_parallel("de", source), source=source)
    assert len(train) + len(heldout) == 1997 and 190 <= len(heldout) <= 260


def test_limit_is_a_spread_subset_identical_across_parallel_languages(data_root):
    # SIB-200 test files are sorted by category: the first 100 rows hold only 3 of 7 topics.
    en = load_sib("en", "test", data_root, limit=100)
    de = load_sib("de", "test", data_root, limit=100)
    assert en["index_id"] == de["index_id"]
    assert len(set(en["category"])) == len(SIB_LABELS)
    full_ids = load_sib("en", "test", data_root)["index_id"]
    positions = [full_ids.index(i) for i in en["index_id"]]
    assert positions == sorted(positions)  # file order kept
    assert load_sib("en", "test", data_root, limit=100)[:] == en[:]  # deterministic
