"""Sub-word ↔ word bookkeeping, written once: the first-sub-word convention.

POS labels, word-pair extraction and word-level distances all represent a word by its *first
sub-word*, with one XLM-R quirk handled here: SentencePiece sometimes emits a bare ``"▁"`` piece
before a word (``"(" → ["▁", "("]``). That piece carries no content, so the word is represented by
the first piece after it. Special tokens never represent a word: neither those the tokenizer adds
(``word_ids() == None``) nor a control token that a word's own text spells out (a word ``"<s>"``
is tokenised as the real ``<s>`` and gets a word id).
Chapter *Data and encoders* shows this on real sentences.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

IGNORE_INDEX = -100
BARE_PIECE = "▁"
CONTROL_TOKENS = frozenset({"<s>", "</s>", "<pad>", "<mask>", "[CLS]", "[SEP]", "[PAD]", "[MASK]"})
"""XLM-R and BERT control tokens. ``<unk>`` is not one: it stands for an unknown word."""


def first_subword_positions(
    word_ids: Sequence[int | None],
    tokens: Sequence[str],
    control_tokens: Collection[str] = CONTROL_TOKENS,
) -> dict[int, int]:
    """Map each word index to the position of its first contentful sub-word.

    ``word_ids`` is ``BatchEncoding.word_ids(i)``; ``tokens`` is ``BatchEncoding.tokens(i)``.
    A word whose only piece is a bare ``"▁"`` falls back to that piece. Words cut off by
    truncation, and words made only of control tokens, do not appear in the result.
    """
    if len(word_ids) != len(tokens):
        raise ValueError(f"word_ids ({len(word_ids)}) and tokens ({len(tokens)}) differ in length")
    positions: dict[int, int] = {}
    fallback: dict[int, int] = {}
    for pos, (wid, tok) in enumerate(zip(word_ids, tokens, strict=True)):
        if wid is None or wid in positions or tok in control_tokens:
            continue
        if tok == BARE_PIECE:
            fallback.setdefault(wid, pos)
            continue
        positions[wid] = pos
    for wid, pos in fallback.items():
        positions.setdefault(wid, pos)
    return positions


def label_first_subwords(
    word_ids: Sequence[int | None],
    tokens: Sequence[str],
    word_labels: Sequence[int],
    ignore_index: int = IGNORE_INDEX,
) -> list[int]:
    """Token-level labels: the word's label on its first contentful sub-word, ``-100`` elsewhere."""
    labels = [ignore_index] * len(word_ids)
    for wid, pos in first_subword_positions(word_ids, tokens).items():
        if wid >= len(word_labels):
            raise ValueError(f"word index {wid} has no label (only {len(word_labels)} labels)")
        labels[pos] = int(word_labels[wid])
    return labels


def word_start_index(
    word_ids: Sequence[int | None], tokens: Sequence[str], n_words: int
) -> list[int]:
    """Position of the first contentful sub-word of each of ``n_words`` words (-1 if truncated)."""
    positions = first_subword_positions(word_ids, tokens)
    return [positions.get(w, -1) for w in range(n_words)]


# CJK ideographs (unified, extensions A–F, compatibility), kana and half-width katakana. Chinese and
# Japanese are written without spaces, so each of these characters is a word of its own.
_CJK_RANGES = (
    (0x3040, 0x30FF),  # Hiragana, Katakana (incl. the prolonged-sound mark ー)
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK unified ideographs extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width katakana
    (0x20000, 0x2FA1F),  # extensions B–F and the compatibility supplement
)


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def _is_punct(char: str) -> bool:
    import unicodedata  # imported here so that this addition leaves the module header untouched

    return unicodedata.category(char).startswith("P")


def split_words(text: str) -> list[str]:
    """Split a raw sentence into words for word alignment (a UD-like fallback, no model).

    Rules, applied character by character:

    - whitespace separates words and is dropped;
    - every punctuation character (Unicode category ``P*``) is a word of its own, except one
      *between two digits*, which stays inside the number (``3.5``, ``1,000``, ``12:30``);
    - every CJK ideograph and every kana is a word of its own (Chinese and Japanese have no
      spaces; one character per word is the usual character-level fallback);
    - everything else (letters, digits, combining marks, symbols) joins the current word.

    Deterministic and language-independent. Chapter *Word pairs and alignment losses* shows it
    on real sentences.
    """
    words: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            words.append("".join(current))
            current.clear()

    for k, char in enumerate(text):
        if char.isspace():
            flush()
        elif _is_punct(char) and not _inside_number(text, k):
            flush()
            words.append(char)
        elif _is_cjk(char):
            flush()
            words.append(char)
        else:
            current.append(char)
    flush()
    return words


def _inside_number(text: str, k: int) -> bool:
    return 0 < k < len(text) - 1 and text[k - 1].isdigit() and text[k + 1].isdigit()
