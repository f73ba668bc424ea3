"""Step ``probe``: the task and alignment gradients of one model on K independent batches each,
with their empirical nulls, as Gram matrices per parameter group (:mod:`xlcore.gradients`) and
the statistics read from them (:mod:`xlcore.analysis.probes`).

A probe reads a model at the ``start`` of fine-tuning (the encoder the run starts from, with a
task head initialised from the run's seed) or at its ``end`` (the fine-tuned model). The
alignment loss is the one the pair's alignment run trained (its projector included), and the
L2 loss's frozen reference is always the original encoder, so the alignment gradient is the
same objective in every regime.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from xlcore import runs
from xlcore.analysis.probes import group_record
from xlcore.batching import collate
from xlcore.config import Config, pair_lang
from xlcore.context import StepContext, Variant, pairs_data
from xlcore.errors import ConfigError
from xlcore.gradients import GradientSpace, Stream, probing, stream_gradients, stream_grams
from xlcore.losses import alignment_forward, build_alignment_loss
from xlcore.samples import probe_split
from xlcore.steps import Planned, encoder_path
from xlcore.taskmodel import IGNORE_INDEX, PieceEncoder, TaskModel, split_task_loss
from xlcore.tasks import get_task

KIND = "probe"
VERSION = 1

AT = ("start", "end")


@dataclass(frozen=True)
class Spec:
    """The probe of one fine-tuning run at ``at``, against the alignment objective of each of
    ``probe_pairs``. The target-language task stream reads the dev split of ``target_langs``
    and, for ``held_langs`` (no dev split), the ``held`` test examples evaluation leaves out
    (:func:`xlcore.samples.probe_split`)."""

    model_name_or_path: str
    task: str
    regime: str
    pair: str | None
    seed: int
    at: str
    src_lang: str
    probe_pairs: tuple[str, ...]
    target_langs: tuple[str, ...]
    held_langs: tuple[str, ...]
    held: int
    test_limit: int | None  # the pair languages' (the held examples are drawn from them)
    batches: int
    batch_size: int
    max_seq_length: int
    dev_limit: int | None
    pooling: str
    align_loss: str
    align_layer: int
    align_alpha: float

    @property
    def variant(self) -> Variant:
        return Variant(self.task, self.regime, self.pair, self.seed)


@dataclass(frozen=True)
class Inputs:
    encoder: runs.Run | None  # the trimmed base encoder (the start, the L2 reference)
    finetuned: runs.Run | None  # the probed fine-tuning run (at the end)
    aligned: dict[str, runs.Run] = field(default_factory=dict)  # each pair's alignment run
    heldout: dict[str, runs.Run] = field(default_factory=dict)  # each pair's held-out pairs


def planned(c: Config, v: Variant, at: str, inputs: Inputs, dev_langs: tuple[str, ...]) -> Planned:
    """The probe of ``v``'s fine-tuning run at ``at``: the baseline against every pair, another
    regime against its own. ``dev_langs``: the languages with a dev split of ``v.task``."""
    if at not in AT:
        raise ValueError(f"a probe is taken at one of {AT}, not {at!r}")
    pairs = tuple(c.data.pairs) if v.pair is None else (v.pair,)
    src = c.data.src_lang
    targets = tuple(pair_lang(p, src) for p in pairs if pair_lang(p, src) in dev_langs)
    held = c.data.probe_held(dev_langs)
    held_langs = tuple(pair_lang(p, src) for p in pairs if pair_lang(p, src) in held)
    flat = c.flat()
    spec = Spec(
        **asdict(v),
        model_name_or_path=c.model.model_name_or_path,
        at=at,
        src_lang=src,
        probe_pairs=pairs,
        target_langs=targets,
        held_langs=held_langs,
        held=c.data.probe_test_rows if held_langs else 0,
        test_limit=c.data.test_limit if held_langs else None,
        batches=c.analysis.probe_batches,
        batch_size=c.analysis.probe_batch_size,
        max_seq_length=flat["max_seq_length"],
        dev_limit=flat["dev_limit"],
        pooling=flat["pooling"],
        align_loss=c.align.loss,
        align_layer=c.align.layer,
        align_alpha=c.align.alpha,
    )
    inputs = Inputs(
        inputs.encoder,
        inputs.finetuned if at == "end" else None,
        {p: inputs.aligned[p] for p in pairs if p in inputs.aligned},
        {p: inputs.heldout[p] for p in pairs},
    )
    files = (
        (v.task, src, "dev"),
        *((v.task, lang, "dev") for lang in targets),
        *((v.task, lang, "test") for lang in held_langs),
    )
    # a probe reads each alignment run's trained loss; the aligned weights only at the start
    # of a sequential run (the encoder it starts from)
    own = v.pair if at == "start" and v.regime == "sequential" else None
    unweighted = tuple(f"aligned-{p}" for p in inputs.aligned if p != own)
    return Planned(f"{v.name}-{at}", spec, inputs, files, unweighted)


def run(spec: Spec, inputs: Inputs, out: runs.Run, ctx: StepContext) -> dict:
    model, tok = _model(spec, inputs, ctx)
    model.to(ctx.device)
    n, k = spec.batch_size, spec.batches
    space = GradientSpace.of(model.encoder)
    english = _task_batches(spec, ctx, tok, spec.src_lang)
    records, grams = [], {}
    context = {**spec.variant.record(), "at": spec.at}
    losses = {p: _alignment_loss(spec, inputs, p, model) for p in spec.probe_pairs}
    # one frozen original encoder for every pair's L2 anchor
    anchored = any(loss.needs_reference for loss in losses.values())
    reference = _reference(spec, inputs) if anchored else None
    with probing([model, *losses.values()]):
        shared = []
        for name, null in (("task", False), ("task_null", True)):
            stream = Stream(name, _task_loss_on(model, english, ctx.device, null, spec.seed))
            shared += stream_gradients(space, stream, k)
        for pair, loss in losses.items():
            streams = _pair_streams(spec, inputs, ctx, tok, model, pair, loss, reference)
            by_group = stream_grams(space, shared, streams, k)
            names = ["task", "task_null", *(s.name for s in streams)]
            for group, gram in by_group.items():
                start, end = space.groups[group]
                record = group_record(
                    gram.numpy(), names, k, alpha=spec.align_alpha, size=end - start
                )
                records.append({**context, "probe_pair": pair, "group": group, **record})
                grams[f"{pair}/{group}"] = gram.numpy()
    np.savez_compressed(out.path / "grams.npz", **grams)
    return {"records": records, "batch_size": n, "batches": k}


def _model(spec: Spec, inputs: Inputs, ctx: StepContext) -> tuple[TaskModel, object]:
    """The model probed: the fine-tuned one at the end; at the start the encoder the run
    starts from with a head initialised from the seed."""
    if spec.at == "end":
        from xlcore.steps.finetune import load_task_model

        return load_task_model(inputs.finetuned, ctx.device)
    source = (
        str(inputs.aligned[spec.pair].path / "encoder")
        if spec.regime == "sequential"
        else encoder_path(spec.model_name_or_path, inputs.encoder)
    )
    encoder, tok = ctx.encoder(source)
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        return TaskModel(encoder, spec.task, pooling=spec.pooling), tok


def _task_batches(spec: Spec, ctx: StepContext, tok, lang: str) -> list[dict]:
    """K collated batches of ``lang``'s dev data, or of the test examples held out of
    evaluation where ``lang`` has no dev split (never trained on, never evaluated)."""
    n, k = spec.batch_size, spec.batches
    if lang in spec.held_langs:
        test = ctx.task_data(spec.task, lang, "test", spec.test_limit)
        examples, what, fix = probe_split(test, spec.held)[1], "held-out test", "probe_test_rows"
    else:
        examples = ctx.task_data(spec.task, lang, "dev", spec.dev_limit)
        what, fix = "dev", "dev_limit"
    if len(examples) < n * k:
        raise ConfigError(
            f"a gradient probe needs {k} batches of {n} {lang} {spec.task} {what} examples, "
            f"there are {len(examples)}; lower probe_batch_size or probe_batches, or raise {fix}"
        )
    encoded = get_task(spec.task).encode(tok, examples, spec.max_seq_length)
    return [collate(encoded[i * n : (i + 1) * n], tok, spec.task) for i in range(k)]


def shuffled_labels(batch: dict, seed: int) -> dict:
    """The batch with its labels permuted among its labelled positions (the task null)."""
    labels = batch["labels"].clone()
    keep = labels != IGNORE_INDEX
    g = torch.Generator().manual_seed(seed)
    values = labels[keep]
    labels[keep] = values[torch.randperm(len(values), generator=g)]
    return {**batch, "labels": labels}


def _task_loss_on(model, batches, device, null: bool, seed: int):
    if null:
        batches = [shuffled_labels(b, seed * 1000 + i) for i, b in enumerate(batches)]
    return lambda k: split_task_loss(model, batches[k], device)


def shuffled_links(
    links: list[list[tuple[int, int]]], tgt_words: list[list[str]], seed: int
) -> list[list[tuple[int, int]]]:
    """Each sentence's word pairs with their target words permuted among the sentence's words
    (the alignment null: the same sentences and words, wrong correspondences)."""
    rng = np.random.default_rng(seed)
    out = []
    for pairs, words in zip(links, tgt_words, strict=True):
        perm = rng.permutation(len(words))
        out.append([(i, int(perm[j])) for i, j in pairs])
    return out


def _alignment_loss(spec: Spec, inputs: Inputs, pair: str, model: TaskModel):
    """The alignment loss as the pair's alignment run trained it (its projector, if any)."""
    loss = build_alignment_loss(spec.align_loss, model.encoder.config.hidden_size)
    if next(loss.parameters(), None) is not None:
        if pair not in inputs.aligned:
            raise ConfigError(
                f"probing the {spec.align_loss!r} loss on {pair} needs the pair's alignment run "
                "(its trained projector); add the sequential regime for the pair"
            )
        weights = runs.check_torch_file(inputs.aligned[pair], "alignment_loss.pt")
        loss.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return loss


def _reference(spec: Spec, inputs: Inputs):
    """The frozen original encoder (the L2 loss's anchor), whatever the probed model is."""
    from xlcore import encoders

    reference, _ = encoders.load(encoder_path(spec.model_name_or_path, inputs.encoder))
    return reference.eval().requires_grad_(False)


def _pair_streams(spec, inputs, ctx, tok, model, pair, loss, reference) -> list[Stream]:
    """The alignment stream of ``pair``, its null, and the target-language task stream."""
    n, k = spec.batch_size, spec.batches
    data = pairs_data(inputs.heldout[pair])
    if len(data) < n * k:
        raise ConfigError(
            f"a gradient probe needs {k} batches of {n} held-out sentence pairs with word pairs "
            f"for {pair}, found {len(data)}; lower probe_batch_size or probe_batches"
        )
    loss.to(ctx.device)
    if reference is not None:
        reference.to(ctx.device)
    encoder = PieceEncoder(model.encoder)
    null_links = shuffled_links(data.links[: n * k], data.tgt_words[: n * k], spec.seed)

    def align_on(links):
        def loss_on(i: int) -> torch.Tensor:
            lo, hi = i * n, (i + 1) * n
            return alignment_forward(
                encoder, loss, tok, data.src_words[lo:hi], data.tgt_words[lo:hi], links[lo:hi],
                layer=spec.align_layer, max_length=spec.max_seq_length, reference_model=reference,
            )  # fmt: skip

        return loss_on

    streams = [Stream("align", align_on(data.links)), Stream("align_null", align_on(null_links))]
    lang = pair_lang(pair, spec.src_lang)
    if lang in (*spec.target_langs, *spec.held_langs):
        batches = _task_batches(spec, ctx, tok, lang)
        streams.append(Stream("target", _task_loss_on(model, batches, ctx.device, False, 0)))
    return streams
