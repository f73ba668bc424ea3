"""xlcore: the library behind the xlalign executable paper.

Aligns multilingual encoders on language pairs, fine-tunes them for POS tagging and sentence
classification, evaluates zero-shot transfer and keeps every expensive step as a cached run.
The book's introduction chapter explains how the pieces fit together.
"""

__version__ = "0.1.0"
