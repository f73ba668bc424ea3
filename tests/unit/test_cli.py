"""The command line reports bad input as one clear error (exit 2) and prints result tables."""

import csv
import io

from xlcore.cli import main
from xlcore.runs import execute, prepare


def test_unknown_override_key_is_one_clear_error(capsys):
    assert main(["grid", "--profile", "smoke", "--set", "learning_rat=1e-3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'learning_rat'" in err and "learning_rate" in err
    assert "Traceback" not in err


def test_unknown_language_lists_available(capsys, tmp_path):
    code = main(["grid", "--profile", "smoke", "--runs", str(tmp_path), "--set", "tgt_langs=xx"])
    assert code == 2
    err = capsys.readouterr().err
    assert "'xx'" in err and "available: ar, de, en, ru, zh" in err


def test_results_table(capsys, tmp_path):
    assert main(["results", "--runs", str(tmp_path)]) == 1  # nothing yet, says what to run
    assert "xlcore grid" in capsys.readouterr().err
    run = prepare("evaluate", "demo", {"a": 1}, version=1, root=tmp_path)
    execute(run, lambda r: {"records": [{"lang": "de", "accuracy": 0.5}]})
    assert main(["results", "--runs", str(tmp_path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1
    assert rows[0]["kind"] == "evaluate" and rows[0]["lang"] == "de"
    assert float(rows[0]["accuracy"]) == 0.5
