"""What the steps of one grid process share: the config, the data source, the device, and the
data each step would otherwise load again (read once per process)."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass

from xlcore import data as xdata
from xlcore import encoders, runs
from xlcore.config import Config, pair_lang
from xlcore.device import resolve_device
from xlcore.objective import AlignmentData, AlignmentObjective
from xlcore.samples import distance_sentences
from xlcore.tasks import get_task
from xlcore.tokens import split_words


@dataclass(frozen=True)
class Variant:
    """One cell of the fine-tuning design: a task, a regime, its pair (None for the baseline and
    every-pair regimes) and a seed."""

    task: str
    regime: str
    pair: str | None
    seed: int

    @property
    def name(self) -> str:
        return (
            f"{self.task}-{self.regime}" + (f"-{self.pair}" if self.pair else "") + f"-s{self.seed}"
        )

    def record(self) -> dict:
        """The columns that identify this cell in every result row."""
        return asdict(self)


class StepContext:
    """Loads data and encoders for the steps of one grid process; a dataset is read once.

    It keeps only what does not move a step's numbers (the steps' specs hold the rest): the data
    source, the device, progress bars and checkpoint spacing."""

    def __init__(self, config: Config, source: xdata.DataSource, progress: bool = True):
        self.source = source
        self.progress = progress
        self.device = resolve_device(config.model.device)
        self.checkpoint_steps = config.finetune.checkpoint_steps
        self._cache: dict = {}

    def memo(self, key: Hashable, fn: Callable):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def task_data(self, task: str, lang: str, split: str, limit: int | None):
        """A task's examples of one split (read once per process)."""
        return self.memo(
            (task, lang, split, limit),
            lambda: get_task(task).load(lang, split, source=self.source, limit=limit),
        )

    def encoded(self, tok, task: str, lang: str, split: str, limit, max_length: int):
        """A task split tokenised for the model (not memoised: it depends on the tokenizer)."""
        examples = self.task_data(task, lang, split, limit)
        return get_task(task).encode(tok, examples, max_length)

    def bitext(self, lang: str, train_limit: int | None) -> tuple[list, list]:
        """(train, held-out) word-split parallel sentences for ``en-lang``, the training part
        cut to ``train_limit`` pairs."""

        def load():
            pairs = xdata.load_parallel(lang, source=self.source)
            train, heldout = xdata.heldout_split(pairs, source=self.source)
            train = train[:train_limit] if train_limit else train
            return (
                [(split_words(p.en), split_words(p.x)) for p in train],
                [(split_words(p.en), split_words(p.x)) for p in heldout],
            )

        return self.memo(("bitext", lang, train_limit), load)

    def encoder(self, name_or_path: str):
        """A fresh copy of an encoder and its tokenizer (steps change the weights)."""
        return encoders.load(str(name_or_path))

    def vocab_texts(self, spec) -> list:
        """Every text the grid's models read, for vocabulary trimming (``spec``: the
        :class:`xlcore.steps.encoder.Spec` naming them)."""
        texts: list = []
        src = spec.src_lang
        own = {src, *(pair_lang(p, src) for p in spec.pairs)}
        tests = [
            (lg, "test", spec.test_limit if lg in own else spec.other_test_limit)
            for lg in (src, *spec.tgt_langs)
        ]
        for task in spec.tasks:
            for lang, split, limit in [
                (src, "train", spec.train_limit),
                (src, "dev", spec.dev_limit),
                *tests,
            ]:
                examples = self.task_data(task, lang, split, limit)
                texts.extend(examples[get_task(task).text_column])
        paired = [pair_lang(p, src) for p in spec.pairs]
        for lang in dict.fromkeys([*paired, *spec.distance_langs]):
            train, heldout = self.bitext(lang, spec.align_train_limit)
            train = train if lang in paired else []  # only the held-out part is measured
            for src_words, tgt_words in (*train, *heldout):
                texts.extend([src_words, tgt_words])
        # The distance analysis's sentences: trimmed away, a piece would be split differently
        # from the full tokenizer's segmentation (Chinese Tatoeba sentences above all).
        for sentences in distance_sentences(
            self.source, src, spec.distance_langs, spec.distance_limit, spec.sample_seed
        ):
            for english, other in sentences.values():
                texts.extend([*english, *other])
        return texts

    def objective(
        self, model, tok, pairs_run: runs.Run, *, loss, layer, batch_size, max_length, seed
    ) -> AlignmentObjective:
        """The alignment objective ``loss`` on the word pairs of ``pairs_run``."""
        return AlignmentObjective(
            model,
            tok,
            pairs_data(pairs_run),
            loss_name=loss,
            layer=layer,
            batch_size=batch_size,
            max_length=max_length,
            seed=seed,
        )


def pairs_data(pairs_run: runs.Run) -> AlignmentData:
    """The sentences and word links a word-pairs run saved."""
    saved = json.loads((pairs_run.path / "pairs.json").read_text())
    return AlignmentData(
        saved["src"], saved["tgt"], [[tuple(p) for p in x] for x in saved["links"]]
    )
