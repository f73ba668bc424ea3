"""The names of the distance measures, apart from the code that computes them (no torch), so
that figures and tables can name them cheaply."""

from __future__ import annotations

METRIC_LABELS = {
    "cos_pairs": "cosine of aligned word pairs",
    "cos_random": "cosine of random pairs",
    "p1_weak_fwd": "word retrieval P@1, en→X (weak)",
    "p1_weak_bwd": "word retrieval P@1, X→en (weak)",
    "p1_strong_fwd": "word retrieval P@1, en→X (strong)",
    "p1_strong_bwd": "word retrieval P@1, X→en (strong)",
    "cos": "cosine of parallel sentences",
    "l2": "L2 distance of parallel sentences",
    "tatoeba_p1_fwd": "Tatoeba retrieval P@1, en→X",
    "tatoeba_p1_bwd": "Tatoeba retrieval P@1, X→en",
}
"""What each measure is called in figures and tables."""
# Kept per item at the last layer, so that a change between two encoders has an interval.
ITEM_METRICS = ("cos_pairs", "p1_strong_fwd", "cos", "tatoeba_p1_fwd")
