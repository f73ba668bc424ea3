"""The book: every chapter executes under the smoke profile, the HTML builds with warnings as
errors, a second build reuses everything, one chapter re-runs with new parameters, and the
built pages work in headless Chromium (figures present, no tracebacks, the explorer switches
views without a kernel)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

import xlcore.chapter
from xlcore import archive, book, headline, widgets
from xlcore.errors import ConfigError, XlcoreError

CHAPTER_PARAMETERS = {"profile", "pairs", "tgt_langs", "tasks", "seeds", "model_name_or_path"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _copy_book(dst: Path) -> Path:
    src = book.PROJECT_DIR
    widgets.vendor_widgets(src)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy(src / f, dst / f)
    shutil.copytree(src / "book", dst / "book", ignore=shutil.ignore_patterns("node_modules"))
    return dst


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The smoke book built in a copy of the project's book sources, with its own runs."""
    root = _copy_book(tmp_path_factory.mktemp("book"))
    saved = os.environ.get("XLCORE_RUNS")
    os.environ["XLCORE_RUNS"] = str(root / "runs")
    try:
        first = book.build("smoke", root=root, progress=False)
        yield root, first
    finally:
        if saved is None:
            os.environ.pop("XLCORE_RUNS", None)
        else:
            os.environ["XLCORE_RUNS"] = saved


def _outputs(nb_path: Path):
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        yield from cell.get("outputs", [])


def test_every_chapter_has_one_parameters_cell_with_the_shared_names():
    for name in book.chapters():
        params = book.chapter_parameters(book.PROJECT_DIR, name)
        assert CHAPTER_PARAMETERS <= set(params), name
        assert params["profile"] == "mini", name


def test_unknown_chapter_parameter_is_an_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown parameter of chapter 'transfer' 'pair'.*pairs"):
        book.check_parameters(book.PROJECT_DIR, "transfer", {"pair": ["en-fi"]})
    with pytest.raises(ConfigError, match="unknown chapter 'tranfser'; choose one of: intro"):
        book.check_parameters(book.PROJECT_DIR, "tranfser", {})


def test_cli_rejects_unknown_parameter_before_any_work(tmp_path):
    env = {**os.environ, "XLCORE_RUNS": str(tmp_path / "runs")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "xlcore.cli",
            "book",
            "--profile",
            "smoke",
            "--chapter",
            "distances",
            "--param",
            'pair=["en-fi"]',
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    assert "unknown parameter of chapter 'distances' 'pair'" in proc.stderr
    assert "Did you mean pairs" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_parse_parameters_reads_python_literals():
    got = book.parse_parameters(['pairs=["en-fi"]', "seeds=[1, 2]", "profile=smoke"])
    assert got == {"pairs": ["en-fi"], "seeds": [1, 2], "profile": "smoke"}
    with pytest.raises(ConfigError, match="name=value"):
        book.parse_parameters(["pairs"])


def test_every_chapter_executes_under_smoke_without_errors(built):
    root, first = built
    assert first.status() == {name: "executed" for name in book.chapters(root)}
    for name in book.chapters(root):
        nb = root / "_build" / "src" / "book" / f"{name}.ipynb"
        outputs = list(_outputs(nb))
        assert not [o for o in outputs if o["output_type"] == "error"], name
        meta = json.loads(nb.read_text())["metadata"]["xlalign"]
        assert meta["parameters"]["profile"] == "smoke"
    assert first.index == root / "_build" / "html" / "index.html"
    assert first.index.is_file()
    # every chapter states where its numbers come from, and that smoke numbers mean nothing
    for name in book.chapters(root):
        html = (root / "_build" / "html" / "book" / f"{name}.html").read_text()
        assert "Where these results come from" in html, name
        assert "its numbers mean nothing" in html, name


@pytest.mark.parametrize(
    ("name", "source", "obj"),
    [
        ("alignment", "losses.py", "class StrongInfoNCE"),
        ("combining", "combine.py", "def pcgrad"),
        ("combining", "combine.py", "def gradvac_adjust"),
        ("transfer", "tokens.py", "def label_first_subwords"),
        ("gradients", "gradients.py", "def stream_grams"),
    ],
)
def test_chapters_show_the_code_they_explain_from_xlcore(built, name, source, obj):
    """The code a chapter explains is included from xlcore's source, not copied into it."""
    import html as htmllib
    import re

    root, _ = built
    page = (root / "_build" / "html" / "book" / f"{name}.html").read_text()
    text = htmllib.unescape(re.sub(r"<[^>]+>", "", page))
    assert obj in text
    assert obj in (book.PROJECT_DIR / "xlcore" / source).read_text()
    assert obj not in (root / "book" / f"{name}.md").read_text()


def test_loss_comparison_runs_before_the_chapters(built):
    """The combining chapter's loss comparison is part of the build's grid: its runs were all
    finished before the chapter started executing."""
    import datetime

    from xlcore import comparison
    from xlcore import grid as xgrid
    from xlcore.chapter import config_of

    root, _ = built
    defaults = book.chapter_parameters(root, "combining")
    smalls = comparison.loss_comparison_configs(
        config_of("smoke", {}), defaults["losses"], task=defaults["loss_task"]
    )
    assert len(smalls) == len(defaults["losses"]) > 1
    meta = json.loads((root / "_build" / "src" / "book" / "combining.ipynb").read_text())
    meta = meta["metadata"]["xlalign"]
    started = datetime.datetime.strptime(meta["executed_at"], "%Y-%m-%d %H:%M:%S")
    started -= datetime.timedelta(seconds=meta["seconds"])
    finished = []
    for small in smalls:
        for step in xgrid.plan(small, root=root / "runs", progress=False).steps:
            assert step.run.complete, step.label
            stamp = step.run.provenance()["finished_at"]
            finished.append(datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z"))
    # executed_at is local time without an offset; provenance times carry theirs
    started = started.astimezone(datetime.UTC)
    assert max(finished) <= started


def test_second_build_reuses_every_chapter(built):
    root, _ = built
    again = book.build("smoke", root=root, progress=False)
    assert set(again.status().values()) == {"unchanged"}


def test_one_chapter_reruns_with_new_parameters_and_the_book_is_rebuilt(built):
    root, _ = built
    page = root / "_build" / "html" / "book" / "transfer.html"
    before = page.stat().st_mtime_ns
    result = book.build(
        "smoke", root=root, only="transfer", parameters={"tgt_langs": ["de"]}, progress=False
    )
    status = result.status()
    assert status["transfer"] == "executed"
    assert status["reproducibility"] == "executed"  # its execution table lists the new run
    others = {s for n, s in status.items() if n not in ("transfer", "reproducibility")}
    assert others == {"unchanged"}
    nb = json.loads((root / "_build" / "src" / "book" / "transfer.ipynb").read_text())
    assert nb["metadata"]["xlalign"]["parameters"]["tgt_langs"] == ["de"]
    assert page.stat().st_mtime_ns > before
    # back to the default parameters: the chapter is executed again, the others are reused
    back = book.build("smoke", root=root, progress=False)
    assert back.status()["transfer"] == "executed"


def test_a_failing_chapter_keeps_the_previous_page(built, tmp_path):
    root, _ = built
    out_dir = root / "_build" / "src" / "book"
    good = (out_dir / "exercises.ipynb").read_bytes()
    src = root / "book" / "exercises.md"
    text = src.read_text()
    try:
        src.write_text(text + "\n```{code-cell} ipython3\nraise RuntimeError('boom')\n```\n")
        with pytest.raises(
            book.BookError, match=r"chapter 'exercises' failed .*RuntimeError: boom"
        ):
            book.execute_chapter(root, "exercises", {"profile": "smoke"}, out_dir=out_dir)
    finally:
        src.write_text(text)
    assert (out_dir / "exercises.ipynb").read_bytes() == good
    assert (out_dir / "exercises.failed.ipynb").is_file()


MACHINE_PATH = re.compile(
    r"(?<![\w.])/(tmp|home|root|work|usr|opt|var|Users|scratch|mnt|data|srv|nfs)/"
)
LOG_LINE = re.compile(r"^xlcore (grid|book):|\bit/s\]|^(INFO|WARNING|DEBUG)\b", re.M)


def test_pages_show_readers_no_machine_path_log_or_injected_cell(built):
    root, _ = built
    for name in book.chapters(root):
        html = (root / "_build" / "html" / "book" / f"{name}.html").read_text()
        assert str(root) not in html and str(Path.home()) not in html, name
        assert not MACHINE_PATH.search(html) and not LOG_LINE.search(html), name
        assert "tag_injected-parameters" not in html and "tag_parameters" in html, name
        assert "tag_hide-input" in html, name  # the set-up code behind a toggle
        nb = json.loads((root / "_build" / "src" / "book" / f"{name}.ipynb").read_text())
        parameters = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
        assert 'profile = "smoke"' in "".join(parameters["source"]), name
        streams = [o for o in _outputs(root / "_build" / "src" / "book" / f"{name}.ipynb")
                   if o.get("name") == "stderr"]  # fmt: skip
        assert streams == [], name


def _glued(nb_path: Path) -> dict:
    """Every value a chapter glued (name → its display data)."""
    return {
        out["metadata"]["scrapbook"]["name"]: out["data"]
        for out in _outputs(nb_path)
        if "scrapbook" in out.get("metadata", {})
    }


@pytest.fixture
def no_runs_no_data(tmp_path, monkeypatch):
    """A clean checkout's view: no runs directory, no data root, an empty cache."""
    monkeypatch.setenv("XLCORE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("XLCORE_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("XLCORE_CACHE", str(tmp_path / "cache"))
    clean = tmp_path / "clean"
    clean.mkdir()
    return _copy_book(clean)


def test_a_results_archive_rebuilds_the_book_with_the_same_numbers(built, no_runs_no_data):
    root, _ = built
    moved = no_runs_no_data.parent / "moved.zip"
    shutil.copy(root / book.RESULTS_FILE.format(profile="smoke"), moved)
    with zipfile.ZipFile(moved) as zf:
        names = zf.namelist()
        for name in names:  # no machine's directories or host in what is published
            text = zf.read(name).decode()
            assert str(root) not in text and not MACHINE_PATH.search(text), name
            assert '"host":' not in text, name
    assert "archive.json" in names and "tables/evaluations.csv" in names
    with zipfile.ZipFile(moved) as zf:  # per-sentence results, in each evaluation's metrics
        evaluation = next(n for n in names if n.startswith("evaluate/") and "metrics" in n)
        assert json.loads(zf.read(evaluation))["sentences"]
    assert not [n for n in names if n.endswith((".pt", ".safetensors", ".npz"))]
    rebuilt = book.build("smoke", root=no_runs_no_data, results=moved, progress=False)
    assert set(rebuilt.status().values()) == {"executed"}
    compared = 0
    for name in book.chapters(root):
        original = _glued(root / "_build" / "src" / "book" / f"{name}.ipynb")
        assert _glued(no_runs_no_data / "_build" / "src" / "book" / f"{name}.ipynb") == original
        compared += len(original)
    assert compared > 20
    base = no_runs_no_data.parent
    assert not (base / "runs").exists() and not (base / "cache").exists()  # nothing computed
    intro = (no_runs_no_data / "_build" / "html" / "book" / "intro.html").read_text()
    assert "read from the results archive of profile smoke (commit" in intro
    assert list((no_runs_no_data / "_build" / "html").rglob("results.zip"))  # the book links it


def _rewritten(src: Path, dst: Path, change) -> Path:
    """A copy of archive ``src`` whose index went through ``change``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "archive.json":
                index = json.loads(data)
                change(index)
                data = json.dumps(index).encode()
            zout.writestr(item, data)
    return dst


def _built_files(root: Path) -> dict[str, int]:
    build = root / "_build"
    return {
        str(p.relative_to(build)): p.stat().st_mtime_ns
        for p in build.rglob("*")
        if p.is_file() and "archives" not in p.parts
    }


def test_a_bad_results_archive_is_one_error_and_overwrites_nothing(built, tmp_path):
    root, _ = built
    good = root / book.RESULTS_FILE.format(profile="smoke")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    newer = _rewritten(good, tmp_path / "newer.zip", lambda i: i.update(version=99))
    fewer = _rewritten(good, tmp_path / "fewer.zip", lambda i: i["chapters"].pop("gradients"))

    def drop_config(index):  # another xlcore's settings: a chapter's config is not archived
        index["configs"].pop(index["chapters"]["transfer"]["configs"][0])

    other = _rewritten(good, tmp_path / "other.zip", drop_config)
    cases = [
        (truncated, "is not a readable results archive"),
        (newer, "version 99; this xlcore reads 'xlalign-results' version 1"),
        (fewer, "has no chapter 'gradients'"),
        (other, "holds no runs for chapter 'intro' with these parameters"),  # shares it
        (tmp_path / "absent.zip", "no results archive at"),
    ]
    before = _built_files(root)
    runs_before = sorted(p.name for p in (root / "runs").glob("*/*"))
    for path, message in cases:
        with pytest.raises(archive.ArchiveError, match=re.escape(message)):
            book.build("smoke", root=root, results=path, progress=False)
    assert _built_files(root) == before  # no page, notebook or archive of the build touched
    assert sorted(p.name for p in (root / "runs").glob("*/*")) == runs_before
    with pytest.raises(ConfigError, match="drop --chapter"):
        book.build("smoke", root=root, results=good, only="data", progress=False)


def test_an_archive_without_a_chapters_settings_says_what_differs(built, tmp_path, monkeypatch):
    root, _ = built
    stored = archive.extract(root / book.RESULTS_FILE.format(profile="smoke"), tmp_path)
    opened = xlcore.chapter.open("data", profile="smoke", runs=stored.root)
    assert opened.archive.root == stored.root and opened.grid.steps
    assert not opened.inventory.empty
    monkeypatch.setenv("XLCORE_RUNS", str(stored.root))  # as on Binder: the default runs
    assert xlcore.chapter.open("data", profile="smoke", runs="").archive.root == stored.root
    with pytest.raises(archive.ArchiveError, match=r"differ from the archived build in: seeds\)"):
        xlcore.chapter.open("data", profile="smoke", runs=stored.root, seeds=[7])


def test_the_headline_is_generated_from_an_archive(built, tmp_path):
    root, _ = built
    block = headline.headline(root / book.RESULTS_FILE.format(profile="smoke"))
    lines = block.splitlines()
    assert lines[0] == headline.START and lines[-1] == headline.END
    assert "results archive of profile smoke" in lines[1]
    claims = [line.split(" | ")[0].lstrip("| ") for line in lines if line.startswith("| ")]
    assert claims == ["claim", "transfer", "distances", "gradients", "loss"]
    readme = f"# title\n\n{headline.START}\nold text\n{headline.END}\n\nmore\n"
    assert headline.replace_block(readme, block) == f"# title\n\n{block}\n\nmore\n"
    with pytest.raises(XlcoreError, match="no headline block"):
        headline.replace_block("# title\n", block)


def test_the_sample_corpus_keeps_only_the_sample_languages(tmp_path, monkeypatch):
    monkeypatch.setenv("XLCORE_DATA", "sample")
    monkeypatch.setenv("XLCORE_CACHE", str(tmp_path / "cache"))
    restricted = book._sample_restrictions("mini", {})
    assert restricted["tgt_langs"] and set(restricted["tgt_langs"]) <= {
        "de",
        "ru",
        "ar",
        "zh",
        "en",
    }
    assert book._sample_restrictions("mini", {"tgt_langs": ["de"]}).get("tgt_langs") is None


# ------------------------------------------------------------------------- in the browser


@pytest.fixture(scope="module")
def browser_page(built):
    if CHROMIUM is None or not _has_playwright():
        if os.environ.get("XLCORE_REQUIRE_BROWSER"):
            pytest.fail("XLCORE_REQUIRE_BROWSER is set but chromium or playwright is missing")
        pytest.skip("needs Debian's chromium and the playwright package")
    from playwright.sync_api import sync_playwright

    root, _ = built
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(root / "_build" / "html")
    )
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        failed: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
        yield root, base, page, errors, failed
        browser.close()
    server.shutdown()


def _has_playwright() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return True


# sphinx-thebe 0.3.1 declares this constant twice on every Jupyter Book 1.x page.
KNOWN_PAGE_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)


def test_every_chapter_page_loads_with_its_figures_and_no_traceback(browser_page):
    root, base, page, errors, failed = browser_page
    for name in book.chapters(root):
        errors.clear()
        failed.clear()
        response = page.goto(f"{base}/book/{name}.html")
        assert response is not None and response.ok, name
        page.wait_for_load_state("networkidle")
        source = (root / "book" / f"{name}.md").read_text()
        expected = len(re.findall(r"^```\{glue:figure\}", source, flags=re.M))
        figures = page.locator("article figure img")
        widths = [figures.nth(i).evaluate("img => img.naturalWidth") for i in range(expected)]
        assert figures.count() == expected and all(w > 100 for w in widths), (name, widths)
        # each figure once: not also under the code cell that glued it
        sources = page.locator("article img").evaluate_all("imgs => imgs.map(i => i.src)")
        assert len(sources) == len(set(sources)), (name, sources)
        outputs = page.locator(".cell_output").all_inner_texts()
        assert not [t for t in outputs if "Traceback" in t], name
        text = page.locator("article").inner_text()
        assert not MACHINE_PATH.search(text) and not LOG_LINE.search(text), name
        assert [e for e in errors if not e.startswith(KNOWN_PAGE_ERRORS)] == [], name
        assert failed == [], (name, failed)


def test_explorer_switches_views_without_a_kernel(browser_page):
    _, base, page, _, _ = browser_page
    page.goto(f"{base}/book/distances.html")
    page.wait_for_selector(".widget-dropdown select", timeout=30_000)
    selects = page.locator(".widget-dropdown select")
    assert selects.count() == 4

    def visible():
        return [
            v.get_attribute("data-view") for v in page.locator(".xl-view").all() if v.is_visible()
        ]

    first = visible()
    assert len(first) == 1
    pair, task, layer, metric = first[0].split("|")
    selects.nth(2).select_option(index=1)  # layer
    page.wait_for_timeout(300)
    after_layer = visible()
    assert len(after_layer) == 1 and after_layer != first
    assert after_layer[0].split("|")[:2] == [pair, task]
    selects.nth(0).select_option(index=1)  # pair
    page.wait_for_timeout(300)
    after_pair = visible()
    assert len(after_pair) == 1
    assert after_pair[0].split("|")[0] != pair
    assert after_pair[0].split("|")[2] == after_layer[0].split("|")[2]  # layer choice kept
