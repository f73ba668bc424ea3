"""SentencePiece-Unigram tokenizers built by hand for ``tokenizers``: the XLM-R special tokens,
the ``precompiled_charsmap`` of a normalisation table, and the fast-tokenizer wrapper.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from xlcore.errors import ConfigError

Model = PreTrainedModel
Tok = PreTrainedTokenizerFast


SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # XLM-R order: ids 0..3, mask last


SPECIAL_ATTRS = (
    "bos_token",
    "eos_token",
    "sep_token",
    "cls_token",
    "unk_token",
    "pad_token",
    "mask_token",
)


META = "\u2581"  # SentencePiece's word-boundary marker


def precompiled_charsmap(mapping: dict[int, str]) -> bytes:
    """SentencePiece ``precompiled_charsmap`` bytes for a code point → string map.

    The format (read by ``tokenizers.normalizers.Precompiled``) is a little-endian u32 byte
    length of a darts-clone double-array trie over the keys' UTF-8 bytes, the trie's u32 units,
    then the NUL-terminated replacement strings the trie's leaf values point into.
    """
    blob = bytearray()
    where: dict[str, int] = {}
    for out in sorted(set(mapping.values())):
        where[out] = len(blob)
        blob += out.encode("utf-8") + b"\0"
    root: dict = {}
    for cp, out in mapping.items():
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[out]  # the key ends here: leaf value
    units = _double_array(root)
    return (4 * len(units)).to_bytes(4, "little") + units.astype("<u4").tobytes() + bytes(blob)


def _double_array(root: dict) -> np.ndarray:
    """Darts-clone units for a byte trie given as nested dicts (``None`` key = leaf value).

    Node at position p: label byte in bits 0-7, has-leaf in bit 8, and ``offset = p ^ base`` in
    bits 10-30; child c sits at ``base ^ c`` and the leaf value (bit 31 set) at ``base``. Bases
    are distinct, so a unit found at ``base ^ c`` with label c belongs to this node.
    """
    size = 1 << 16
    units = np.zeros(size, dtype=np.uint64)
    used = np.zeros(size, dtype=bool)
    used_base = np.zeros(size, dtype=bool)
    used[0] = True
    queue: deque[tuple[dict, int]] = deque([(root, 0)])  # breadth first
    lowest_free = 1
    while queue:
        node, pos = queue.popleft()
        labels = sorted(k for k in node if k is not None)
        slots = ([0] if None in node else []) + labels
        while used[lowest_free]:
            lowest_free += 1
        base = _free_base(used, used_base, slots, lowest_free & ~0xFF)
        while base + 256 >= used.size:  # grow, rarely
            units, used, used_base = (
                np.concatenate([a, np.zeros_like(a)]) for a in (units, used, used_base)
            )
            base = _free_base(used, used_base, slots, lowest_free & ~0xFF)
        used_base[base] = True
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("trie too large for the simple offset encoding")
        units[pos] |= (offset << 10) | ((1 << 8) if None in node else 0)
        if None in node:
            units[base] = (1 << 31) | node[None]
            used[base] = True
        for label in labels:
            child = base ^ label
            units[child] = label
            used[child] = True
            queue.append((node[label], child))
    last = int(np.flatnonzero(used).max()) + 1
    # Lookups read position base ^ c for any byte c, so keep every 256-block a base touches.
    return units[: (last | 0xFF) + 1].astype(np.uint32)


def _free_base(used: np.ndarray, used_base: np.ndarray, slots: list[int], start: int) -> int:
    """Smallest base ≥ ``start`` that is unused and whose slots ``base ^ s`` are all free."""
    while True:
        cand = np.arange(start, min(start + 4096, used.size - 256))
        if cand.size == 0:
            return used.size  # caller grows the arrays
        ok = ~used_base[cand]
        for s in slots:
            ok &= ~used[cand ^ s]
        hits = np.flatnonzero(ok)
        if hits.size:
            return int(cand[hits[0]])
        start += 4096


def unigram_backend(
    vocab: list[tuple[str, float]], unk_id: int, normalizer: normalizers.Normalizer
) -> Tokenizer:
    """An XLM-R-style Unigram ``Tokenizer``: ``<s> … </s>``, Metaspace, specials registered."""
    backend = Tokenizer(models.Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    backend.normalizer = normalizers.Sequence(
        [normalizer, normalizers.Replace(Regex(" {2,}"), " ")]
    )
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always")
    _register_specials(backend)
    return backend


def _register_specials(backend: Tokenizer) -> None:
    ids = {tok: backend.token_to_id(tok) for tok in SPECIALS}
    missing = [tok for tok, i in ids.items() if i is None]
    if missing:
        raise ConfigError(f"tokenizer vocabulary lacks the special tokens {missing}")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])],
    )
    # As in XLM-R: <mask> swallows the space before it.
    backend.add_special_tokens(
        [AddedToken(t, special=True, lstrip=t == "<mask>") for t in SPECIALS]
    )


def wrap_tokenizer(backend: Tokenizer, model_max_length: int) -> Tok:
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=model_max_length,
    )
