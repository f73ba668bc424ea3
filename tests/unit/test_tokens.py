"""First-sub-word labelling: multi-piece words, bare "▁" pieces, specials, truncation."""

from xlcore.tokens import IGNORE_INDEX, first_subword_positions, label_first_subwords

# <s> ▁Die ▁Kat ze ▁ ( ▁schläft </s> <pad>
WORD_IDS = [None, 0, 1, 1, 2, 2, 3, None, None]
TOKENS = ["<s>", "▁Die", "▁Kat", "ze", "▁", "(", "▁schläft", "</s>", "<pad>"]


def test_first_contentful_piece():
    assert first_subword_positions(WORD_IDS, TOKENS) == {0: 1, 1: 2, 2: 5, 3: 6}


def test_labels_only_on_first_pieces():
    labels = label_first_subwords(WORD_IDS, TOKENS, [10, 11, 12, 13])
    assert labels == [
        IGNORE_INDEX,
        10,
        11,
        IGNORE_INDEX,
        IGNORE_INDEX,
        12,
        13,
        IGNORE_INDEX,
        IGNORE_INDEX,
    ]


def test_word_made_only_of_bare_piece_falls_back():
    assert first_subword_positions([None, 0, 1, None], ["<s>", "▁", "▁a", "</s>"]) == {0: 1, 1: 2}


def test_truncated_words_get_no_label():
    # The tokenizer cut the sentence after word 1's first piece.
    labels = label_first_subwords([None, 0, 1, None], ["<s>", "▁a", "▁b", "</s>"], [1, 2, 3, 4])
    assert labels == [IGNORE_INDEX, 1, 2, IGNORE_INDEX]
