"""The experiment grid: every step of a profile as a cached run, executed in dependency order.

Steps: (optional) vocabulary-trimmed encoder → word pairs per language pair → aligned encoder per
pair and seed → fine-tuned task model per task, regime, pair and seed → zero-shot evaluation on
every target language. Chapter *Introduction* shows how to run it; ``xlcore grid --profile P``
is the command-line front end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from xlcore import data as xdata
from xlcore import encoders, runs
from xlcore.align import extract_word_pairs
from xlcore.analysis import distances as xdist
from xlcore.config import STRATEGY_REGIMES, Config, pair_lang
from xlcore.device import precision_name, resolve_device, uses_bf16
from xlcore.errors import ConfigError, GridWorkerError
from xlcore.evaluate import encode_pos, encode_sib, evaluate, majority_baseline
from xlcore.paths import SAMPLE_ROOT, runs_dir
from xlcore.tokens import split_words
from xlcore.train import (
    AlignmentData,
    AlignmentObjective,
    FinetuneSettings,
    GradientProbe,
    TaskModel,
    align_encoder,
    finetune,
)

NUM_LABELS = {"pos": len(xdata.UPOS), "sib": len(xdata.SIB_LABELS)}
_LAYOUT = {
    "pos": "ud/{lang}/{split}.conllu",
    "sib": "sib200/{lang}/{split}.tsv",
    "parallel": "parallel/en-{lang}.tsv",
    "tatoeba": "tatoeba/{lang}-en.tsv",
}
_DISTANCE_MAX_LENGTH = 128


def data_source(config: Config) -> xdata.DataSource:
    """The data source a config reads (``data`` = auto, sample, or a path)."""
    if config.data == "sample":
        return xdata.DataSource(root=SAMPLE_ROOT, kind="sample")
    if config.data == "auto":
        return xdata.resolve_source()
    return xdata.resolve_source(Path(config.data))


def validate_languages(config: Config, source: xdata.DataSource) -> None:
    """Reject languages the data source lacks, listing the ones it has."""
    needs = []
    for task in config.tasks:
        needs.append((task, config.src_lang, "train"))
        needs.append((task, config.src_lang, "dev"))
        needs.extend((task, lang, "test") for lang in config.tgt_langs)
    for pair in config.pairs:
        needs.append(("parallel", pair_lang(pair, config.src_lang), None))
    for task, lang, split in needs:
        available = xdata.available_languages(task, split=split, source=source)
        if lang not in available:
            what = {"pos": "POS (UD)", "sib": "SIB-200", "parallel": "parallel (NTREX)"}[task]
            split_txt = f" {split}" if split else ""
            message = (
                f"language {lang!r} has no {what}{split_txt} data in {source.describe()}; "
                f"available: {', '.join(available) or 'none'}"
            )
            if split and lang in xdata.available_languages(task, source=source):
                has = [
                    s for s in xdata.SPLITS if lang in xdata.available_languages(task, s, source)
                ]
                message += (
                    f". {lang!r} has only {', '.join(has)}: add "
                    f"{source.root / _LAYOUT[task].format(lang=lang, split=split)}"
                )
            raise ConfigError(message)


def _checksums(source: xdata.DataSource, items: list[tuple[str, str, str | None]]) -> dict:
    out = {}
    for task, lang, split in items:
        rel = _LAYOUT[task].format(lang=lang, split=split)
        out[rel] = xdata.file_checksum(source.root / rel)
    return out


@dataclass
class Step:
    """One planned run plus the function that computes it."""

    run: runs.Run
    fn: Callable[[runs.Run], dict]
    seed: int | None = None
    label: str = ""


@dataclass
class Grid:
    """A planned grid: its steps in dependency order, and the finished evaluation runs."""

    config: Config
    source: xdata.DataSource
    steps: list[Step] = field(default_factory=list)
    root: Path = field(default_factory=runs_dir)

    def add(
        self, kind: str, name: str, spec: dict, fn, *, data=None, deps=None, seed=None
    ) -> runs.Run:
        run = runs.prepare(kind, name, spec, data=data, deps=deps, root=self.root)
        if all(s.run.path != run.path for s in self.steps):
            self.steps.append(Step(run, fn, seed, f"{kind} {name}"))
        return run


class _Context:
    """Loads data and encoders once per grid process."""

    def __init__(self, config: Config, source: xdata.DataSource, progress: bool = True):
        self.config = config
        self.source = source
        self.progress = progress
        self.device = resolve_device(config.device)
        self._cache: dict = {}

    def memo(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def pos(self, lang: str, split: str, limit: int | None):
        return self.memo(
            ("pos", lang, split, limit),
            lambda: xdata.load_pos(lang, split, source=self.source, limit=limit),
        )

    def sib(self, lang: str, split: str, limit: int | None):
        return self.memo(
            ("sib", lang, split, limit),
            lambda: xdata.load_sib(lang, split, source=self.source, limit=limit),
        )

    def task_data(self, task: str, lang: str, split: str, limit: int | None):
        return (self.pos if task == "pos" else self.sib)(lang, split, limit)

    def bitext(self, lang: str) -> tuple[list, list]:
        """(train, held-out) word-split parallel sentences for ``en-lang``."""

        def load():
            pairs = xdata.load_parallel(lang, source=self.source)
            train, heldout = xdata.heldout_split(pairs, source=self.source)
            limit = self.config.align_train_limit
            train = train[:limit] if limit else train
            return (
                [(split_words(p.en), split_words(p.x)) for p in train],
                [(split_words(p.en), split_words(p.x)) for p in heldout],
            )

        return self.memo(("bitext", lang), load)

    def encoder(self, name_or_path: str):
        model, tokenizer = encoders.load(str(name_or_path))
        return model, tokenizer


def _vocab_texts(ctx: _Context) -> list:
    c = ctx.config
    texts: list = []
    for task in c.tasks:
        for lang, split, limit in [
            (c.src_lang, "train", c.train_limit),
            (c.src_lang, "dev", c.dev_limit),
            *[(lg, "test", c.test_limit) for lg in (c.src_lang, *c.tgt_langs)],
        ]:
            for ex in ctx.task_data(task, lang, split, limit):
                texts.append(list(ex.words) if task == "pos" else ex.text)
    for pair in c.pairs:
        train, heldout = ctx.bitext(pair_lang(pair, c.src_lang))
        for src, tgt in (*train, *heldout):
            texts.extend([src, tgt])
    return texts


def plan(config: Config, *, root: Path | None = None, progress: bool = True) -> Grid:
    """Plan every step of ``config`` (nothing is computed)."""
    source = data_source(config)
    validate_languages(config, source)
    grid = Grid(config=config, source=source, root=root or runs_dir())
    ctx = _Context(config, source, progress)
    c = config
    # The keys record the precision actually used: a bf16 request on a CPU without native bf16
    # runs in fp32, the computation of bf16=false, and must not share keys with bf16 runs made
    # on another machine (a chapter would mix the two).
    bf16 = uses_bf16(ctx.device, c.bf16)
    model_spec = {"model_name_or_path": c.model_name_or_path}
    pair_langs = [pair_lang(p, c.src_lang) for p in c.pairs]

    # Every file the grid reads, for the run keys.
    task_files = [(t, c.src_lang, s) for t in c.tasks for s in ("train", "dev")]
    task_files += [
        (t, lg, "test") for t in c.tasks for lg in dict.fromkeys((c.src_lang, *c.tgt_langs))
    ]
    all_files = _checksums(source, task_files + [("parallel", lg, None) for lg in pair_langs])

    base_deps: dict[str, runs.Run] = {}
    if c.trim_vocab:
        spec = {
            **model_spec,
            "texts": {
                k: getattr(c, k)
                for k in (
                    "tasks",
                    "tgt_langs",
                    "pairs",
                    "train_limit",
                    "dev_limit",
                    "test_limit",
                    "align_train_limit",
                    "src_lang",
                )
            },
        }

        def make_encoder(run: runs.Run) -> dict:
            model, tok = ctx.encoder(c.model_name_or_path)
            full = model.config.vocab_size
            model, tok, kept = encoders.trim_vocabulary(model, tok, _vocab_texts(ctx))
            encoders.save(model, tok, run.path / "encoder")
            return {
                "records": [{"step": "trim_vocab", "vocab_full": full, "vocab_kept": len(kept)}],
                "vocab_full": full,
                "vocab_kept": len(kept),
            }

        enc_run = grid.add(
            "encoder",
            c.model_name_or_path.replace(":", "-").replace("/", "-"),
            spec,
            make_encoder,
            data=all_files,
        )
        base_deps = {"encoder": enc_run}

    def base_path() -> str:
        return str(base_deps["encoder"].path / "encoder") if base_deps else c.model_name_or_path

    align_runs: dict[tuple[str, int, int], runs.Run] = {}
    pair_runs: dict[str, runs.Run] = {}
    heldout_runs: dict[str, runs.Run] = {}
    aligned_regimes = [r for r in c.regimes if r != "baseline"]
    wants_heldout = bool(set(c.analyses) & {"distances", "gradients"})
    for pair, lang in zip(c.pairs, pair_langs, strict=True):
        wp_spec = {
            **model_spec,
            "pair": pair,
            "layer": c.wordpair_layer,
            "method": c.wordpair_method,
            "align_train_limit": c.align_train_limit,
        }
        wp_data = _checksums(source, [("parallel", lang, None)])

        def make_pairs(run: runs.Run, lang=lang, part="train") -> dict:
            model, tok = ctx.encoder(base_path())
            model.to(ctx.device)
            train, heldout = ctx.bitext(lang)
            sentences = train if part == "train" else heldout
            links = extract_word_pairs(
                model, tok, sentences, layer=c.wordpair_layer, method=c.wordpair_method
            )
            runs.atomic_write_json(
                run.path / "pairs.json",
                {
                    "src": [s for s, _ in sentences],
                    "tgt": [t for _, t in sentences],
                    "links": links,
                },
            )
            n_links = sum(len(x) for x in links)
            return {
                "records": [
                    {
                        "pair": f"en-{lang}",
                        "part": part,
                        "sentences": len(sentences),
                        "links": n_links,
                    }
                ],
                "sentences": len(sentences),
                "links": n_links,
            }

        if wants_heldout:
            heldout_runs[pair] = grid.add(
                "wordpairs",
                f"{pair}-heldout",
                {**wp_spec, "part": "heldout"},
                lambda run, lang=lang: make_pairs(run, lang, "heldout"),
                data=wp_data,
                deps=base_deps,
            )
        if not any(pair in c.regime_pairs(r) for r in aligned_regimes):
            continue
        pair_runs[pair] = grid.add(
            "wordpairs", pair, wp_spec, make_pairs, data=wp_data, deps=base_deps
        )
        for seed in c.seeds:
            for task in c.tasks:
                steps = c.align_steps or c.max_steps(task)
                if "sequential" not in c.regimes or (pair, seed, steps) in align_runs:
                    continue
                al_spec = {
                    **model_spec,
                    "pair": pair,
                    "loss": c.align_loss,
                    "layer": c.align_layer,
                    "steps": steps,
                    "batch_size": c.align_batch_size,
                    "seed": seed,
                    "learning_rate": c.align_learning_rate or c.learning_rate,
                    "max_seq_length": c.max_seq_length,
                    "bf16": bf16,
                }
                if c.fused_optimizer:  # recorded only when on: older runs keep their keys
                    al_spec["fused_optimizer"] = True

                def make_aligned(run: runs.Run, pair=pair, seed=seed, steps=steps) -> dict:
                    torch.manual_seed(seed)
                    model, tok = ctx.encoder(base_path())
                    objective = _objective(ctx, model, tok, pair_runs[pair], seed)
                    metrics = align_encoder(
                        run,
                        model,
                        objective,
                        steps=steps,
                        learning_rate=c.align_learning_rate or c.learning_rate,
                        device=ctx.device,
                        bf16=c.bf16,
                        fused_optimizer=c.fused_optimizer,
                        checkpoint_steps=c.checkpoint_steps,
                        progress=ctx.progress,
                    )
                    encoders.save(model.cpu(), tok, run.path / "encoder")
                    runs.atomic_torch_save(
                        objective.loss.cpu().state_dict(), run.path / "alignment_loss.pt"
                    )
                    metrics["records"] = [
                        {
                            "pair": pair,
                            "seed": seed,
                            "align_loss": c.align_loss,
                            "align_loss_first": metrics["align_loss_first"],
                            "align_loss_last": metrics["align_loss_last"],
                        }
                    ]
                    return metrics

                align_runs[(pair, seed, steps)] = grid.add(
                    "align",
                    f"{pair}-{c.align_loss}-s{seed}",
                    al_spec,
                    make_aligned,
                    deps={**base_deps, "wordpairs": pair_runs[pair]},
                    seed=seed,
                )

    distance_langs = list(dict.fromkeys(pair_langs))
    dist_spec = {
        "langs": distance_langs,
        "distance_limit": c.distance_limit,
        "distance_word_pairs": c.distance_word_pairs,
        "max_length": _DISTANCE_MAX_LENGTH,
        "bf16": bf16,
    }
    dist_files = _checksums(
        source,
        [("sib", lg, "test") for lg in (c.src_lang, *distance_langs)]
        + [("tatoeba", lg, None) for lg in distance_langs],
    )
    wants_distances = "distances" in c.analyses and bool(distance_langs)

    def add_distances(name: str, record: dict, load, deps: dict) -> None:
        fn = _distances_fn(ctx, record, load, heldout_runs, distance_langs)
        grid.add(
            "distances",
            name,
            dist_spec,
            fn,
            data=dist_files,
            deps={**deps, **{f"heldout-{p}": r for p, r in heldout_runs.items()}},
            seed=record.get("seed"),
        )

    if wants_distances:
        add_distances(
            "base",
            {"stage": "base"},
            lambda: ctx.encoder(base_path()),
            dict(base_deps),
        )
        for (pair, seed, _steps), al_run in align_runs.items():
            add_distances(
                f"aligned-{pair}-s{seed}",
                {"stage": "aligned", "pair": pair, "seed": seed},
                lambda al_run=al_run: ctx.encoder(str(al_run.path / "encoder")),
                {"align": al_run},
            )

    ft_keys = (
        "learning_rate",
        "per_device_train_batch_size",
        "max_seq_length",
        "warmup_ratio",
        "weight_decay",
        "eval_steps",
        "pooling",
        "train_limit",
        "dev_limit",
        "eval_max_seq_length",
        "group_by_length",
    )
    for task in c.tasks:
        for seed in c.seeds:
            variants: list[tuple[str, str | None]] = []
            if "baseline" in c.regimes:
                variants.append(("baseline", None))
            for regime in aligned_regimes:
                variants.extend((regime, pair) for pair in c.regime_pairs(regime))
            for regime, pair in variants:
                spec = {
                    **model_spec,
                    "task": task,
                    "regime": regime,
                    "pair": pair,
                    "seed": seed,
                    "max_steps": c.max_steps(task),
                    **{k: getattr(c, k) for k in ft_keys},
                    "bf16": bf16,
                }
                deps = dict(base_deps)
                if regime == "sequential":
                    deps["align"] = align_runs[(pair, seed, c.align_steps or c.max_steps(task))]
                if regime in STRATEGY_REGIMES:
                    deps["wordpairs"] = pair_runs[pair]
                    spec.update(
                        align_loss=c.align_loss,
                        align_layer=c.align_layer,
                        align_alpha=c.align_alpha,
                        align_batch_size=c.align_batch_size,
                    )
                if regime == "gradvac":
                    spec["gradvac_beta"] = c.gradvac_beta
                if c.split_by_length:  # recorded only when on: older runs keep their keys
                    spec["split_by_length"] = True
                if c.fused_optimizer:  # likewise
                    spec["fused_optimizer"] = True
                probe_every = c.probe_interval(task)
                if probe_every:
                    probe_pairs = c.pairs if regime == "baseline" else (pair,)
                    spec.update(
                        probe_every=probe_every,
                        probe_batch_size=c.probe_batch_size,
                        probe_pairs=list(probe_pairs),
                        align_loss=c.align_loss,
                        align_layer=c.align_layer,
                    )
                    for p in probe_pairs:
                        deps[f"heldout-{p}"] = heldout_runs[p]
                files = _checksums(source, [(task, c.src_lang, "train"), (task, c.src_lang, "dev")])
                name = f"{task}-{regime}" + (f"-{pair}" if pair else "") + f"-s{seed}"
                ft_fn = _finetune_fn(ctx, task, regime, pair, seed, deps, base_path)
                ft_run = grid.add("finetune", name, spec, ft_fn, data=files, deps=deps, seed=seed)
                if wants_distances and regime in c.distance_regimes:
                    add_distances(
                        f"finetuned-{name}",
                        {
                            "stage": "finetuned",
                            "task": task,
                            "regime": regime,
                            "pair": pair,
                            "seed": seed,
                        },
                        lambda ft_run=ft_run: _finetuned_encoder(ft_run),
                        {"finetune": ft_run},
                    )

                langs = list(dict.fromkeys((c.src_lang, *c.tgt_langs)))
                ev_spec = {
                    "langs": langs,
                    "test_limit": c.test_limit,
                    "eval_max_seq_length": c.eval_max_seq_length,
                    "bf16": bf16,
                }
                if c.eval_split_by_length:  # recorded only when on: older runs keep their keys
                    ev_spec["eval_split_by_length"] = True
                ev_files = _checksums(source, [(task, lg, "test") for lg in langs])
                ev_fn = _evaluate_fn(ctx, task, regime, pair, seed, langs, ft_run)
                grid.add(
                    "evaluate",
                    name,
                    ev_spec,
                    ev_fn,
                    data=ev_files,
                    deps={"finetune": ft_run},
                    seed=seed,
                )
    return grid


def _pairs_data(pairs_run: runs.Run) -> AlignmentData:
    saved = json.loads((pairs_run.path / "pairs.json").read_text())
    return AlignmentData(
        saved["src"], saved["tgt"], [[tuple(p) for p in x] for x in saved["links"]]
    )


def _objective(ctx: _Context, model, tok, pairs_run: runs.Run, seed: int) -> AlignmentObjective:
    c = ctx.config
    data = _pairs_data(pairs_run)
    return AlignmentObjective(
        model,
        tok,
        data,
        loss_name=c.align_loss,
        layer=c.align_layer,
        batch_size=c.align_batch_size,
        max_length=c.max_seq_length,
        seed=seed,
    )


def _encoded(ctx: _Context, tok, task: str, lang: str, split: str, limit, max_length: int):
    examples = ctx.task_data(task, lang, split, limit)
    return (encode_pos if task == "pos" else encode_sib)(tok, examples, max_length)


def _finetune_fn(ctx, task, regime, pair, seed, deps, base_path):
    c = ctx.config

    def fn(run: runs.Run) -> dict:
        torch.manual_seed(seed)
        start_from = str(deps["align"].path / "encoder") if regime == "sequential" else base_path()
        encoder, tok = ctx.encoder(start_from)
        model = TaskModel(encoder, task, NUM_LABELS[task], pooling=c.pooling)
        objective = None
        if regime in STRATEGY_REGIMES:
            objective = _objective(ctx, encoder, tok, deps["wordpairs"], seed)
        train = _encoded(ctx, tok, task, c.src_lang, "train", c.train_limit, c.max_seq_length)
        dev = _encoded(ctx, tok, task, c.src_lang, "dev", c.dev_limit, c.eval_max_seq_length)
        probe = _gradient_probe(ctx, task, regime, pair, seed, deps, encoder, tok, objective)
        settings = FinetuneSettings(
            max_steps=c.max_steps(task),
            batch_size=c.per_device_train_batch_size,
            eval_batch_size=c.per_device_eval_batch_size,
            learning_rate=c.learning_rate,
            weight_decay=c.weight_decay,
            warmup_ratio=c.warmup_ratio,
            eval_steps=c.eval_steps,
            checkpoint_steps=c.checkpoint_steps,
            seed=seed,
            align_alpha=c.align_alpha,
            group_by_length=c.group_by_length,
            gradvac_beta=c.gradvac_beta,
            split_by_length=c.split_by_length,
            fused_optimizer=c.fused_optimizer,
        )
        metrics = finetune(
            run,
            model,
            train,
            dev,
            settings=settings,
            pad_id=tok.pad_token_id,
            device=ctx.device,
            objective=objective,
            strategy=regime if regime in STRATEGY_REGIMES else "joint",
            probe=probe,
            bf16=c.bf16,
            progress=ctx.progress,
        )
        runs.atomic_write_json(run.path / "encoder_source.json", {"encoder": start_from})
        context = {"task": task, "regime": regime, "pair": pair, "seed": seed}
        metrics["gradients"] = [{**context, **r} for r in metrics["gradients"]]
        metrics["records"] = [
            {
                "task": task,
                "regime": regime,
                "pair": pair,
                "seed": seed,
                "lang": c.src_lang,
                "split": "dev",
                "accuracy": metrics["best_dev_accuracy"],
            }
        ]
        return metrics

    return fn


def _gradient_probe(ctx, task, regime, pair, seed, deps, encoder, tok, objective):
    """The probe of one fine-tuning run: two English dev batches against each pair's held-out
    alignment batches. The loss module is the run's own (joint family), the aligned run's
    (sequential), or a fresh one initialised from the seed (baseline)."""
    c = ctx.config
    every = c.probe_interval(task)
    if not every:
        return None
    from xlcore.align import build_alignment_loss
    from xlcore.analysis.gradients import probe_steps
    from xlcore.evaluate import collate

    n = c.probe_batch_size
    dev = _encoded(ctx, tok, task, c.src_lang, "dev", c.dev_limit, c.max_seq_length)
    if len(dev) < 2 * n:
        raise ConfigError(
            f"gradient probing needs {2 * n} English dev examples, the {task} dev set has "
            f"{len(dev)}; lower probe_batch_size or set probe_every=0"
        )
    batches = [collate(dev[k * n : (k + 1) * n], tok.pad_token_id, task) for k in range(2)]
    pairs = c.pairs if regime == "baseline" else (pair,)
    if not pairs:
        return None
    objectives = {}
    for p in pairs:
        data = _pairs_data(deps[f"heldout-{p}"])
        if len(data) < 2 * n:
            raise ConfigError(
                f"gradient probing needs {2 * n} held-out sentence pairs with word pairs for "
                f"{p}, found {len(data)}; lower probe_batch_size or set probe_every=0"
            )
        if objective is not None:
            loss, reference = objective.loss, objective.reference
        else:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                loss = build_alignment_loss(c.align_loss, encoder.config.hidden_size)
            if regime == "sequential":
                state = torch.load(
                    runs.check_torch_file(deps["align"], "alignment_loss.pt"),
                    map_location="cpu",
                    weights_only=True,
                )
                loss.load_state_dict(state)
            reference = None
            if loss.needs_reference:
                import copy

                reference = copy.deepcopy(encoder).eval().requires_grad_(False)
        objectives[p] = (loss, data, reference)
    return GradientProbe(
        probe_steps(c.max_steps(task), every),
        batches,
        objectives,
        tokenizer=tok,
        layer=c.align_layer,
        max_length=c.max_seq_length,
        batch_size=n,
        device=ctx.device,
    )


def _finetuned_encoder(ft_run: runs.Run):
    model, tok = load_task_model(ft_run)
    return model.encoder, tok


def _distances_fn(ctx, record: dict, load, heldout_runs: dict, langs: list[str]):
    c = ctx.config

    def fn(run: runs.Run) -> dict:
        model, tok = load()
        model.to(ctx.device).eval()
        word_pairs = {}
        for pair, hr in heldout_runs.items():
            lang = pair_lang(pair, c.src_lang)
            data = _pairs_data(hr)
            word_pairs[lang] = xdist.WordPairSet(
                data.src_words, data.tgt_words, data.links
            ).limited(c.distance_word_pairs)
        parallel, tatoeba = {}, {}
        en_sib = {e.id: e.text for e in xdata.load_sib(c.src_lang, "test", source=ctx.source)}
        for lang in langs:
            x_sib = xdata.load_sib(lang, "test", source=ctx.source)
            shared = [e for e in x_sib if e.id in en_sib][: c.distance_limit]
            parallel[lang] = ([en_sib[e.id] for e in shared], [e.text for e in shared])
            if lang in xdata.available_languages("tatoeba", source=ctx.source):
                rows = xdata.load_tatoeba(lang, source=ctx.source)[: c.distance_limit]
                tatoeba[lang] = ([en for en, _ in rows], [x for _, x in rows])
        records = xdist.measure(
            model,
            tok,
            word_pairs=word_pairs,
            parallel=parallel,
            tatoeba=tatoeba,
            max_length=_DISTANCE_MAX_LENGTH,
            bf16=c.bf16,
        )
        base = {"stage": None, "task": None, "regime": None, "pair": None, "seed": None}
        return {
            "records": [{**base, **record, **r} for r in records],
            "precision": precision_name(ctx.device, c.bf16),
        }

    return fn


def load_task_model(finetune_run: runs.Run, device: torch.device | None = None) -> tuple:
    """The fine-tuned :class:`TaskModel` of a finished run, and its tokenizer."""
    spec = finetune_run.spec["spec"]
    source = json.loads((finetune_run.path / "encoder_source.json").read_text())["encoder"]
    encoder, tok = encoders.load(source)
    model = TaskModel(encoder, spec["task"], NUM_LABELS[spec["task"]], pooling=spec["pooling"])
    weights = runs.check_torch_file(finetune_run, "model.pt")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device or torch.device("cpu")).eval(), tok


def _evaluate_fn(ctx, task, regime, pair, seed, langs, ft_run):
    c = ctx.config

    def fn(run: runs.Run) -> dict:
        model, tok = load_task_model(ft_run, ctx.device)
        records = []
        majority_train = ctx.pos(c.src_lang, "train", c.train_limit) if task == "pos" else None
        for lang in tqdm(
            langs, desc=f"evaluate {run.path.name[:40]}", leave=False, disable=not ctx.progress
        ):
            encoded = _encoded(ctx, tok, task, lang, "test", c.test_limit, c.eval_max_seq_length)
            scores = evaluate(
                model,
                encoded,
                task,
                tok.pad_token_id,
                c.per_device_eval_batch_size,
                ctx.device,
                c.bf16,
                split_by_length=c.eval_split_by_length,
            )
            rec = {
                "task": task,
                "regime": regime,
                "pair": pair,
                "seed": seed,
                "lang": lang,
                "split": "test",
                **scores,
            }
            if task == "pos":
                rec["majority_accuracy"] = majority_baseline(
                    majority_train, ctx.pos(lang, "test", c.test_limit)
                )
            records.append(rec)
        return {"records": records}

    return fn


def resolve_jobs(jobs: int | str | None = None, default: str = "1") -> int:
    """How many runs a grid computes at once: ``jobs``, else ``$XLCORE_JOBS``, else ``default``.

    ``"auto"`` is 2 on a machine without CUDA whose torch uses at least two threads, else 1: the
    small batches of the ``mini`` profile keep two threads poorly busy, and two one-thread runs
    side by side finish about 1.3× sooner than the same runs one after the other on two threads
    (``benchmarks/bench_jobs.py``). On a GPU one run at a time keeps the device busy.
    """
    value = os.environ.get("XLCORE_JOBS", default) if jobs is None else jobs
    if isinstance(value, str) and value.strip().lower() == "auto":
        return 2 if not torch.cuda.is_available() and torch.get_num_threads() >= 2 else 1
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n < 1 or str(n) != str(value).strip():
        raise ConfigError(
            f"jobs must be a positive whole number or auto (--jobs, XLCORE_JOBS), got {value!r}"
        )
    return n


def run_grid(
    config: Config,
    *,
    root: Path | None = None,
    progress: bool = True,
    jobs: int | str | None = None,
) -> Grid:
    """Plan and execute every step of ``config``; finished steps are skipped, partial resumed.

    ``jobs`` (default ``$XLCORE_JOBS``, else 1; see :func:`resolve_jobs`) runs that many steps at
    once in worker processes, each as soon as the runs it depends on are complete.
    """
    return run_grids([config], root=root, progress=progress, jobs=jobs)[0]


def run_grids(
    configs: Sequence[Config],
    *,
    root: Path | None = None,
    progress: bool = True,
    jobs: int | str | None = None,
) -> list[Grid]:
    """:func:`run_grid` for several configs at once: their steps (a run shared by two configs
    is computed once) are executed together, so ``jobs`` workers can overlap the grids."""
    root = root or runs_dir()
    n_jobs = resolve_jobs(jobs)
    with runs.grid_lock(root):
        grids = [plan(config, root=root, progress=progress) for config in configs]
        steps = _steps_by_path(grids)
        todo = [path for path, (step, _) in steps.items() if not step.run.complete]
        if todo:  # a missing encoder is refused before any run directory is made
            for name in dict.fromkeys(config.model_name_or_path for config in configs):
                encoders.check_available(name)
        n_jobs = min(n_jobs, len(todo)) or 1
        print(
            f"xlcore grid: profile {configs[0].profile}, {len(steps)} steps "
            f"({len(steps) - len(todo)} already complete); data: "
            f"{grids[0].source.describe()}; runs in {root}"
            + (f"; {n_jobs} runs at a time" if n_jobs > 1 else ""),
            flush=True,
        )
        start = time.perf_counter()
        bar = tqdm(
            total=len(steps), initial=len(steps) - len(todo), desc="grid", disable=not progress
        )
        try:
            if n_jobs == 1:
                for path in todo:
                    step, source = steps[path]
                    runs.execute(step.run, step.fn, seed=step.seed, data_source=source)
                    bar.update()
            else:
                _execute_parallel(list(configs), root, steps, todo, n_jobs, bar)
        finally:
            bar.close()
        print(
            f"xlcore grid: done in {time.perf_counter() - start:.0f} s; "
            f"results: `xlcore results` (runs in {root})",
            flush=True,
        )
    return grids


def _steps_by_path(grids: Sequence[Grid]) -> dict[Path, tuple[Step, str]]:
    """Every step of ``grids`` once (a run two grids share: the first grid's step), in plan
    order, with its grid's data source description."""
    steps: dict[Path, tuple[Step, str]] = {}
    for grid in grids:
        for step in grid.steps:
            steps.setdefault(step.run.path, (step, grid.source.describe()))
    return steps


# Worker processes of a parallel grid: each plans the same grids once, then computes the runs it
# is handed by path. Workers never take the runs directory's grid lock (the parent holds it);
# every run is still computed under its own lock (:func:`xlcore.runs.execute`).
_WORKER_STEPS: dict[Path, tuple[Step, str]] = {}


def _worker_start(configs: list[Config], root: Path, threads: int, parent: int) -> None:
    torch.set_num_threads(threads)

    def exit_with_parent() -> None:  # a killed grid leaves no worker behind holding a run lock
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=exit_with_parent, name="xlcore-parent-watch", daemon=True).start()
    _WORKER_STEPS.update(
        _steps_by_path([plan(config, root=root, progress=False) for config in configs])
    )


def _worker_run(path: Path) -> None:
    step, source = _WORKER_STEPS[path]
    runs.execute(step.run, step.fn, seed=step.seed, data_source=source)


def _execute_parallel(configs, root, steps, todo, jobs: int, bar) -> None:
    """Run ``todo`` (plan order) on ``jobs`` spawned workers, each step once its dependencies in
    ``todo`` are complete; torch's threads are shared out between the workers.

    A failed step stops new submissions; the steps already running finish (their results are
    kept) and the first error is raised. The next grid resumes what is left.
    """
    pending = {path: None for path in todo}  # insertion-ordered set
    deps = {
        path: {Path(d) for d in steps[path][0].run.spec["deps"].values()} & pending.keys()
        for path in todo
    }
    threads = max(1, torch.get_num_threads() // jobs)
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_start,
        initargs=(configs, root, threads, os.getpid()),
    )
    running: dict[Future, Path] = {}
    done: set[Path] = set()
    error: BaseException | None = None
    try:
        while pending or running:
            if error is None:
                for path in [p for p in pending if deps[p] <= done][: jobs - len(running)]:
                    del pending[path]
                    running[pool.submit(_worker_run, path)] = path
            if not running:
                if error is None:
                    raise RuntimeError(f"grid steps wait on each other: {sorted(pending)}")
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                path = running.pop(future)
                try:
                    future.result()
                except BrokenProcessPool as exc:
                    if error is None:
                        error = GridWorkerError(
                            f"a grid worker process died while computing {path} (killed, or "
                            f"out of memory?); finished runs are kept and the next grid resumes "
                            f"the rest; if {jobs} runs at a time need too much memory, use "
                            f"--jobs 1 (XLCORE_JOBS=1)"
                        )
                        error.__cause__ = exc
                except BaseException as exc:
                    error = error or exc
                else:
                    done.add(path)
                    bar.update()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if error is not None:
        raise error


def _frame(grid: Grid, kind: str, key: str = "records"):
    import pandas as pd

    rows = []
    for step in grid.steps:
        if step.run.kind == kind and step.run.complete:
            rows.extend(step.run.metrics().get(key, []))
    return pd.DataFrame(rows)


def evaluation_frame(grid: Grid):
    """The grid's zero-shot results as one tidy DataFrame (one row per model and language)."""
    return _frame(grid, "evaluate")


def distance_frame(grid: Grid):
    """Distance measures of every encoder of the grid: columns stage (base, aligned,
    finetuned), task, regime, pair, seed, lang, layer, level, metric, value, n."""
    return _frame(grid, "distances")


def gradient_frame(grid: Grid):
    """Gradient probe records of every fine-tuning run: columns task, regime, pair, seed,
    step, probe_pair, group, cos, norm_task, norm_align, floor_task, floor_align."""
    return _frame(grid, "finetune", "gradients")


def loss_comparison_configs(
    config: Config, losses: Sequence[str], *, task: str, pair: str | None = None
) -> list[Config]:
    """The small grids of :func:`compare_losses`, one per loss: baseline and sequential
    alignment on ``pair`` (default: the config's first), evaluated on the pair's own language.
    ``xlcore book`` runs them with the chapters' grids, so the combining chapter finds them done."""
    import dataclasses

    pair = pair or config.pairs[0]
    lang = pair_lang(pair, config.src_lang)
    return [
        dataclasses.replace(
            config,
            align_loss=loss,
            pairs=(pair,),
            tgt_langs=(lang,),
            tasks=(task,),
            regimes=("baseline", "sequential"),
            analyses=(),
            strategy_pairs=(),
        )
        for loss in losses
    ]


def compare_losses(config: Config, losses, *, pair: str, task: str, root: Path | None = None):
    """Sequential alignment with each loss in ``losses`` on one ``pair`` and ``task``: a small
    grid per loss (:func:`loss_comparison_configs`), run or reused; the small grids are executed
    together (:func:`run_grids`, ``$XLCORE_JOBS`` runs at a time).

    Returns one row per loss: task, pair, align_loss, baseline, accuracy, delta.
    """
    import pandas as pd

    from xlcore.analysis.relations import transfer_deltas

    smalls = loss_comparison_configs(config, losses, task=task, pair=pair)
    rows = []
    for loss, grid in zip(losses, run_grids(smalls, root=root, progress=False), strict=True):
        d = transfer_deltas(evaluation_frame(grid), config.src_lang)
        own = d[d["own_pair"]]
        rows.append(
            {
                "task": task,
                "pair": pair,
                "align_loss": loss,
                "baseline": own["baseline"].mean(),
                "accuracy": own["accuracy"].mean(),
                "delta": own["delta"].mean(),
            }
        )
    return pd.DataFrame(rows)


def alignment_losses(grid: Grid):
    """Per-step alignment losses of every aligned encoder: columns pair, seed, step, loss."""
    import pandas as pd

    rows = []
    for step in grid.steps:
        if step.run.kind == "align" and step.run.complete:
            spec = step.run.spec["spec"]
            losses = step.run.metrics()["align_losses"]
            rows.extend(
                {"pair": spec["pair"], "seed": spec["seed"], "step": i + 1, "loss": v}
                for i, v in enumerate(losses)
            )
    return pd.DataFrame(rows)


def finetune_logs(grid: Grid):
    """Per-step training logs of every fine-tuning run (losses, dev accuracy, and for
    pcgrad/gradvac the cosine of the two gradients at every step)."""
    import pandas as pd

    rows = []
    for step in grid.steps:
        if step.run.kind == "finetune" and step.run.complete:
            spec = step.run.spec["spec"]
            context = {k: spec[k] for k in ("task", "regime", "pair", "seed")}
            rows.extend({**context, **e} for e in step.run.metrics()["log"])
    return pd.DataFrame(rows)


__all__ = [
    "plan",
    "resolve_jobs",
    "run_grid",
    "run_grids",
    "validate_languages",
    "data_source",
    "evaluation_frame",
    "distance_frame",
    "gradient_frame",
    "finetune_logs",
    "alignment_losses",
    "compare_losses",
    "loss_comparison_configs",
    "load_task_model",
    "Grid",
]
