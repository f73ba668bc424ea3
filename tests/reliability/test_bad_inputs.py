"""Bad input stops the grid with one clear xlcore error and leaves finished results untouched.

Every case starts from a runs directory holding a finished grid (fine-tune + evaluate) and a copy
of the data root, damages one thing, runs the step a user would run next, and checks the error's
type and message (file and line, or the fix), then that no finished file changed and that no new
run is marked complete.
"""

import errno
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import xlcore.checkpoint
from xlcore import runs
from xlcore.cli import main
from xlcore.config import make_config
from xlcore.errors import ConfigError, DataError, RunStorageError, XlcoreError
from xlcore.grid import run_grid
from xlcore.runs import RunCorruptedError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def edit_line(path: Path, number: int, change: Callable[[str], str]) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[number - 1] = change(lines[number - 1])
    path.write_text("\n".join(lines), encoding="utf-8")


def set_column(path: Path, number: int, column: int, value: str) -> None:
    def change(line: str) -> str:
        cols = line.split("\t")
        cols[column] = value
        return "\t".join(cols)

    edit_line(path, number, change)


def drop_last_column(path: Path, number: int) -> None:
    edit_line(path, number, lambda line: line.rsplit("\t", 1)[0])


def run_dir(ws, kind: str) -> Path:
    (path,) = (ws.runs / kind).iterdir()
    return path


def fail_writes(monkeypatch, name: str, code: int, named: bool = False) -> None:
    """Make every atomic write of a file called ``name`` fail with ``OSError(code)``
    (naming the file when ``named``, as a refused open does; a full disk's write does not)."""
    real = runs.atomic_write_bytes

    def write(path, data):
        if Path(path).name == name:
            raise OSError(code, os.strerror(code), *([str(path)] if named else []))
        real(path, data)

    monkeypatch.setattr(runs, "atomic_write_bytes", write)


def make_read_only(ws, monkeypatch) -> None:
    for path in [ws.runs, *ws.runs.rglob("*")]:
        if path.is_dir():
            path.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    if os.access(ws.runs, os.W_OK):
        pytest.skip("chmod does not stop this user from writing (root); see the simulated case")


def hub_model_is_cached(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def offline_hub(ws, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if hub_model_is_cached("FacebookAI/xlm-roberta-base"):
        pytest.skip("FacebookAI/xlm-roberta-base is in the local hub cache")


def garble_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def truncate_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def change_accuracy(path: Path) -> None:
    path.write_text(re.sub(r'"accuracy": [0-9.]+', '"accuracy": 0.99', path.read_text()))


@dataclass
class Case:
    id: str
    action: Callable  # (ws) -> None, must raise
    error: type[XlcoreError]
    message: str  # regex; {data} and {runs} stand for the escaped data and runs roots
    setup: Callable = field(default=lambda ws, monkeypatch: None)
    after: Callable = field(default=lambda ws: None)  # further checks on the damaged workspace


def _no_unfinished_runs(ws) -> None:
    """The grid refused before creating any run directory."""
    assert [p for p in ws.runs.glob("*/*") if p.is_dir() and not runs.is_complete(p)] == []


def _evaluate_not_complete(ws) -> None:
    partial = [p for p in (ws.runs / "evaluate").iterdir() if not (p / "complete.json").exists()]
    assert len(partial) == 1 and (partial[0] / "spec.json").exists()
    assert not runs.is_complete(partial[0])


CASES = [
    Case(
        "unknown-language",
        lambda ws: ws.grid(tgt_langs=["xx"]),
        ConfigError,
        r"language 'xx' has no POS \(UD\) test data in data from {data}; "
        r"available: ar, de, en, ru, zh$",
    ),
    Case(
        "language-code-in-another-scheme",
        lambda ws: ws.grid(pairs=["en-deu"]),
        ConfigError,
        r"language 'deu' has no parallel \(NTREX\) data .*available: ar, de, ru, zh$",
    ),
    Case(
        "missing-split",
        lambda ws: ws.grid(),
        ConfigError,
        r"language 'en' has no POS \(UD\) dev data .*'en' has only train, test: "
        r"add {data}/ud/en/dev\.conllu$",
        setup=lambda ws, mp: (ws.data / "ud/en/dev.conllu").unlink(),
    ),
    Case(
        "conllu-column-count",
        lambda ws: ws.grid(),
        DataError,
        r"^{data}/ud/en/train\.conllu:40: expected 10 tab-separated columns, got 9$",
        setup=lambda ws, mp: drop_last_column(ws.data / "ud/en/train.conllu", 40),
    ),
    Case(
        "conllu-bad-upos",
        lambda ws: ws.grid(),
        DataError,
        r"^{data}/ud/en/train\.conllu:40: UPOS 'PUNC' is not one of the 17 UD tags: ADJ ADP",
        setup=lambda ws, mp: set_column(ws.data / "ud/en/train.conllu", 40, 3, "PUNC"),
    ),
    Case(
        "conllu-non-integer-id",
        lambda ws: ws.grid(),
        DataError,
        r"^{data}/ud/en/train\.conllu:40: ID 'ten' is not a word id",
        setup=lambda ws, mp: set_column(ws.data / "ud/en/train.conllu", 40, 0, "ten"),
    ),
    Case(  # the fine-tuned model is reused; its evaluation on the damaged test file fails
        "conllu-bad-upos-in-test-split",
        lambda ws: ws.grid(),
        DataError,
        r"^{data}/ud/de/test\.conllu:31: UPOS 'VERBB' is not one of the 17 UD tags",
        setup=lambda ws, mp: set_column(ws.data / "ud/de/test.conllu", 31, 3, "VERBB"),
        after=_evaluate_not_complete,
    ),
    Case(
        "tsv-missing-column",
        lambda ws: ws.grid(tasks=["sib"]),
        DataError,
        r"^{data}/sib200/en/train\.tsv:7: expected 3 tab-separated fields "
        r"\(index_id, category, text\), got 2$",
        setup=lambda ws, mp: drop_last_column(ws.data / "sib200/en/train.tsv", 7),
    ),
    Case(
        "parallel-empty-file",
        lambda ws: ws.grid(regimes=["baseline", "sequential"]),
        DataError,
        r"^{data}/parallel/en-de\.tsv:1: empty file; expected the header id<TAB>en<TAB>de$",
        setup=lambda ws, mp: (ws.data / "parallel/en-de.tsv").write_bytes(b""),
    ),
    Case(
        "parallel-header-only",
        lambda ws: ws.grid(regimes=["baseline", "sequential"]),
        DataError,
        r"^{data}/parallel/en-de\.tsv:2: no sentence pairs after the header$",
        setup=lambda ws, mp: (ws.data / "parallel/en-de.tsv").write_text("id\ten\tde\n"),
    ),
    Case(
        "parallel-misaligned-row",
        lambda ws: ws.grid(regimes=["baseline", "sequential"]),
        DataError,
        r"^{data}/parallel/en-de\.tsv:9: expected 3 tab-separated fields \(id, en, de\), got 2$",
        setup=lambda ws, mp: drop_last_column(ws.data / "parallel/en-de.tsv", 9),
    ),
    Case(
        "parallel-empty-translation",
        lambda ws: ws.grid(regimes=["baseline", "sequential"]),
        DataError,
        r"^{data}/parallel/en-de\.tsv:9: empty sentence$",
        setup=lambda ws, mp: set_column(ws.data / "parallel/en-de.tsv", 9, 2, " "),
    ),
    Case(
        "hub-model-while-offline",
        lambda ws: ws.grid(model_name_or_path="FacebookAI/xlm-roberta-base"),
        ConfigError,
        r"^encoder 'FacebookAI/xlm-roberta-base' could not be found locally or on the Hugging "
        r"Face hub \(HF_HUB_OFFLINE is set, so nothing is downloaded\)\. Fix: .*'tiny-xlmr'",
        setup=offline_hub,
        after=lambda ws: _no_unfinished_runs(ws),
    ),
    Case(
        "unknown-profile",
        lambda ws: make_config("smok"),
        ConfigError,
        r"^unknown profile 'smok'; choose one of: smoke, mini, extended, paper$",
    ),
    Case(
        "unknown-config-key",
        lambda ws: ws.grid(learning_rat=1e-3),
        ConfigError,
        r"^unknown config key 'learning_rat'\. Did you mean learning_rate, .*\? "
        r"Known: align_alpha, ",
    ),
    Case(
        "read-only-runs-directory",
        lambda ws: ws.grid(tgt_langs=["de", "ru"]),
        RunStorageError,
        r"^cannot write run {runs}/evaluate/\S+: Permission denied .*make it writable, or "
        r"point XLCORE_RUNS \(--runs\) at a writable directory",
        setup=make_read_only,
    ),
    Case(  # the same failure where chmod cannot stop the user (root)
        "read-only-runs-directory-simulated",
        lambda ws: ws.grid(tgt_langs=["de", "ru"]),
        RunStorageError,
        r"^cannot write run {runs}/evaluate/\S+: Permission denied \({runs}/evaluate/\S+/"
        r"spec\.json\); make it writable, or point XLCORE_RUNS \(--runs\) at a writable",
        setup=lambda ws, mp: fail_writes(mp, "spec.json", errno.EACCES, named=True),
    ),
    Case(
        "disk-full-while-checkpointing",
        lambda ws: ws.grid(learning_rate=2e-3),
        RunStorageError,
        r"^cannot write run {runs}/finetune/\S+: No space left on device; free disk space, or "
        r"point XLCORE_RUNS \(--runs\) at a disk with room\. Nothing unfinished is marked "
        r"complete: the next grid resumes it$",
        setup=lambda ws, mp: fail_writes(mp, "checkpoint.pt", errno.ENOSPC),
    ),
    Case(
        "disk-full-at-completion-marker",
        lambda ws: ws.grid(tgt_langs=["de", "ru"]),
        RunStorageError,
        r"^cannot write run {runs}/evaluate/\S+: No space left on device; free disk space",
        setup=lambda ws, mp: fail_writes(mp, "complete.json", errno.ENOSPC),
        after=_evaluate_not_complete,
    ),
    Case(
        "truncated-metrics",
        lambda ws: ws.grid(),
        RunCorruptedError,
        r"^run {runs}/finetune/pos-baseline-s1-\w+ is marked complete but metrics\.json or "
        r"complete\.json was changed or truncated; remove that directory to recompute it$",
        setup=lambda ws, mp: truncate_half(run_dir(ws, "finetune") / "metrics.json"),
    ),
    Case(
        "garbled-completion-marker",
        lambda ws: ws.grid(),
        RunCorruptedError,
        r"^run {runs}/evaluate/pos-baseline-s1-\w+ is marked complete but metrics\.json or "
        r"complete\.json was changed or truncated; remove that directory",
        setup=lambda ws, mp: (run_dir(ws, "evaluate") / "complete.json").write_text("null"),
    ),
    Case(
        "truncated-model-weights",
        lambda ws: ws.grid(),
        RunCorruptedError,
        r"^run {runs}/finetune/pos-baseline-s1-\w+ is marked complete but model\.pt has \d+ "
        r"bytes, not \d+; remove that directory to recompute it$",
        setup=lambda ws, mp: truncate_half(run_dir(ws, "finetune") / "model.pt"),
    ),
    Case(  # same size, so only the checksum can tell; found when a new evaluation loads it
        "garbled-model-weights",
        lambda ws: ws.grid(tgt_langs=["de", "ru"]),
        RunCorruptedError,
        r"^run {runs}/finetune/pos-baseline-s1-\w+ is marked complete but model\.pt "
        r"(fails its checksum|cannot be read).*; remove that directory to recompute it$",
        setup=lambda ws, mp: garble_middle(run_dir(ws, "finetune") / "model.pt"),
    ),
    Case(
        "edited-results-read-as-table",
        lambda ws: runs.results_frame(ws.runs),
        RunCorruptedError,
        r"^run {runs}/evaluate/pos-baseline-s1-\w+ is marked complete but metrics\.json",
        setup=lambda ws, mp: change_accuracy(run_dir(ws, "evaluate") / "metrics.json"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_error_and_results_survive(case, workspace, monkeypatch, runs_probe):
    ws = workspace
    assert len(runs_probe.complete(ws.runs)) == 2
    try:
        case.setup(ws, monkeypatch)
        before_files = runs_probe.files(ws.runs)
        before_complete = runs_probe.complete(ws.runs)
        with pytest.raises(XlcoreError) as info:
            case.action(ws)
    finally:
        for path in [ws.runs, *ws.runs.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
    message = str(info.value)
    assert type(info.value) is case.error, f"{type(info.value).__name__}: {message}"
    pattern = case.message.format(
        data=re.escape(str(ws.data.resolve())), runs=re.escape(str(ws.runs.resolve()))
    )
    assert re.search(pattern, message), message
    assert "\n" not in message
    after_files = runs_probe.files(ws.runs)
    assert {k: after_files.get(k) for k in before_files} == before_files
    assert runs_probe.complete(ws.runs) == before_complete
    case.after(ws)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("damage", [truncate_half, garble_middle], ids=["truncated", "garbled"])
def test_damaged_checkpoint_is_set_aside_and_the_run_recomputed(
    damage, workspace, monkeypatch, finished_runs, runs_probe
):
    ws = workspace
    fresh = ws.runs.parent / "fresh"
    real_save = xlcore.checkpoint.atomic_torch_save

    def save_then_die(obj, path):
        real_save(obj, path)
        if path.name == runs.CHECKPOINT:
            raise Interrupt(f"killed after writing {path}")

    monkeypatch.setattr(xlcore.checkpoint, "atomic_torch_save", save_then_die)
    config = ws.config()
    with pytest.raises(Interrupt):
        run_grid(config, root=fresh, progress=False)
    monkeypatch.setattr(xlcore.checkpoint, "atomic_torch_save", real_save)
    (partial,) = (fresh / "finetune").iterdir()
    checkpoint = partial / runs.CHECKPOINT
    assert runs.torch_file_problem(checkpoint) is None  # an intact checkpoint is resumed
    assert torch.load(checkpoint, weights_only=False)["step"] == 4
    damage(checkpoint)

    with pytest.warns(RuntimeWarning) as warned:
        grid = run_grid(config, root=fresh, progress=False)
    (warning,) = [w for w in warned if "checkpoint" in str(w.message)]
    assert re.fullmatch(
        rf"run {re.escape(str(partial))}: checkpoint\.pt (fails its checksum|cannot be read)"
        r".*; moved it to checkpoint\.pt\.corrupted and recomputing the run from the start",
        str(warning.message),
    ), warning.message
    assert (partial / "checkpoint.pt.corrupted").read_bytes() != b""
    assert not checkpoint.exists() and all(s.run.complete for s in grid.steps)
    # recomputed from the start, the results equal those of the uninterrupted grid, bit for bit
    for run in runs_probe.complete(finished_runs):
        assert (fresh / run / "metrics.json").read_bytes() == (
            finished_runs / run / "metrics.json"
        ).read_bytes()


def test_cli_reports_bad_data_in_one_line(workspace, capsys):
    ws = workspace
    set_column(ws.data / "ud/en/train.conllu", 40, 3, "PUNC")
    settings = ["tasks=pos", "regimes=baseline", "pairs=en-de", "tgt_langs=de", "analyses="]
    argv = ["grid", "--profile", "smoke", "--quiet", "--runs", str(ws.runs)]
    argv += [x for item in [*settings, f"data={ws.data}"] for x in ("--set", item)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"xlcore: error: {ws.data.resolve()}/ud/en/train.conllu:40: UPOS 'PUNC' is not one of the "
        "17 UD tags: ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X"
    )
