"""The README a newcomer reads: short, and its headline generated from the committed results
archive of the default build, never typed by hand."""

from pathlib import Path

from xlcore import headline

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = REPO / "results" / "xlalign-results-mini.zip"


def test_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 120


def test_readme_headline_is_generated_from_the_committed_archive(monkeypatch, tmp_path):
    # read from the archive alone: no data root, no encoder in the cache
    monkeypatch.setenv("XLCORE_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("XLCORE_CACHE", str(tmp_path / "cache"))
    text = (REPO / "README.md").read_text()
    start, end = text.index(headline.START), text.index(headline.END) + len(headline.END)
    assert text[start:end] == headline.headline(ARCHIVE)
    assert "results archive of profile mini" in text[start:end]
    assert not (tmp_path / "cache").exists()
