"""Sub-word ↔ word bookkeeping, written once: the first-sub-word convention.

POS labels, word-pair extraction and word-level distances all represent a word by its *first
sub-word*, with one XLM-R quirk handled here: SentencePiece sometimes emits a bare ``"▁"`` piece
before a word (``"(" → ["▁", "("]``). That piece carries no content, so the word is represented by
the first piece after it. Special tokens (``word_ids() == None``) never represent a word.
Chapter *Data and encoders* shows this on real sentences.
"""

from __future__ import annotations

from collections.abc import Sequence

IGNORE_INDEX = -100
BARE_PIECE = "▁"


def first_subword_positions(
    word_ids: Sequence[int | None], tokens: Sequence[str]
) -> dict[int, int]:
    """Map each word index to the position of its first contentful sub-word.

    ``word_ids`` is ``BatchEncoding.word_ids(i)``; ``tokens`` is ``BatchEncoding.tokens(i)``.
    A word whose only piece is a bare ``"▁"`` falls back to that piece. Words cut off by
    truncation do not appear in the result.
    """
    if len(word_ids) != len(tokens):
        raise ValueError(f"word_ids ({len(word_ids)}) and tokens ({len(tokens)}) differ in length")
    positions: dict[int, int] = {}
    fallback: dict[int, int] = {}
    for pos, (wid, tok) in enumerate(zip(word_ids, tokens, strict=True)):
        if wid is None or wid in positions:
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
