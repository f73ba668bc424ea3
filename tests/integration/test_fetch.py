"""``xlcore data fetch`` against a local mirror built from the real data root.

The mirror holds the upstream files at their raw.githubusercontent.com paths (UD and SIB-200 files
as they are; Tatoeba and NTREX split back into their two-file upstream form, NTREX with CRLF line
ends) and is served by a small HTTP server that understands ``Range`` requests.
"""

import argparse
import contextlib
import http.server
import io
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from xlcore import fetch as xfetch
from xlcore.config import make_config
from xlcore.errors import DataError
from xlcore.readers import file_checksum, read_tsv
from xlcore.sources import fetch_plan, provide

pytestmark = pytest.mark.shared_data

UD_COMMIT_COLUMNS = ("repo", "short", "commit", "file", "sha256_matches")
LANGS = ("mr", "af")  # small files; English (always fetched) comes along
# URL path prefixes of ud/mr and ud/af
MR_UD = "/UniversalDependencies/UD_Marathi-UFAL/c02a08246fdb6c99257d7c5bc6ef14f736a995bf"
AF_UD = "/UniversalDependencies/UD_Afrikaans-AfriBooms/a6dd726120c8bf1a0f8fb40f6a9ca15e880a192a"


def upstream_files(source: xfetch.Source, final: Path) -> dict[str, bytes]:
    """URL path → bytes of the upstream file(s) that ``source`` is made from."""
    paths = [urlparse(u).path for u in source.urls]
    if source.method == "copy":
        return {paths[0]: final.read_bytes()}
    rows = final.read_text(encoding="utf-8").split("\n")[1:-1]
    cols = list(zip(*(row.split("\t") for row in rows), strict=True))
    if source.method == "tatoeba":
        return {
            p: "".join(f"{c}\n" for c in col).encode() for p, col in zip(paths, cols, strict=True)
        }
    crlf = [("".join(f"{c}\r\n" for c in col)).encode() for col in cols[1:]]  # drop the id column
    return dict(zip(paths, crlf, strict=True))


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves the mirror; honours ``Range: bytes=N-`` unless the server says not to."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        path = (server.base / unquote(urlparse(self.path).path).lstrip("/")).resolve()
        if server.base not in path.parents or not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and server.honour_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mirror_dir(data_root, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("mirror")
    for source in xfetch.plan(LANGS):
        for url_path, content in upstream_files(source, data_root / source.path).items():
            target = base / url_path.lstrip("/")
            if target.exists():  # the NTREX English source is shared by every language
                assert target.read_bytes() == content
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    return base


@pytest.fixture
def server(mirror_dir):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.base = mirror_dir.resolve()
    httpd.requests = []
    httpd.honour_range = True
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def manifest(data_root: Path) -> dict[str, str]:
    rows = read_tsv(data_root / "MANIFEST.tsv", ("path", "bytes", "sha256", "lines"))
    return {path: sha for path, _, sha, _ in rows}


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.suffix in (".part", ".tmp") or p.name == ".upstream"]


def seed_english(data_root: Path, root: Path, parts=("ud",)) -> None:
    """Put the English files in place so a test downloads only what it is about."""
    for source in xfetch.plan([], parts):
        target = root / source.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_root / source.path, target)


def test_fetch_reproduces_the_data_root(data_root, server, tmp_path):
    root = tmp_path / "data"
    files = xfetch.fetch(LANGS, root, mirror=server.url, progress=False)
    relative = sorted(p.relative_to(root).as_posix() for p in files)
    expected = manifest(data_root)
    assert "parallel/en-mr.tsv" in relative and "tatoeba/af-en.tsv" in relative
    assert "ud/en/train.conllu" in relative and "parallel/ntrex_document_ids.tsv" in relative
    assert len(relative) == 3 + 4 + 3 * 3 + 2 + 2 + 1  # ud en/mr/af, sib200 ×3, tatoeba, ntrex
    for rel in relative:
        assert (root / rel).read_bytes() == (data_root / rel).read_bytes(), rel
        assert file_checksum(root / rel) == expected[rel]
    assert leftovers(root) == []

    # A second run finds every file complete and downloads nothing.
    server.requests.clear()
    assert xfetch.fetch(LANGS, root, mirror=server.url, progress=False) == files
    assert server.requests == []


def test_fetch_resumes_a_partial_download_with_range(data_root, server, tmp_path):
    root = tmp_path / "data"
    seed_english(data_root, root)
    original = (data_root / "ud/mr/test.conllu").read_bytes()
    part = root / "ud/mr/test.conllu.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(original[:20000])
    xfetch.fetch(["mr"], root, mirror=server.url, parts=("ud",), progress=True)
    assert (root / "ud/mr/test.conllu").read_bytes() == original
    requests = dict(server.requests)
    assert requests[f"{MR_UD}/mr_ufal-ud-test.conllu"] == "bytes=20000-"
    assert requests[f"{MR_UD}/mr_ufal-ud-dev.conllu"] is None  # no .part: a plain request
    assert not any("English" in path for path, _ in server.requests)  # already present: skipped
    assert leftovers(root) == []


def test_fetch_restarts_when_the_server_ignores_range(data_root, server, tmp_path):
    root = tmp_path / "data"
    seed_english(data_root, root)
    part = root / "ud/mr/dev.conllu.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from some other file")
    server.honour_range = False
    xfetch.fetch(["mr"], root, mirror=server.url, parts=("ud",), progress=False)
    assert (root / "ud/mr/dev.conllu").read_bytes() == (data_root / "ud/mr/dev.conllu").read_bytes()
    assert (f"{MR_UD}/mr_ufal-ud-dev.conllu", "bytes=32-") in server.requests


def test_checksum_mismatch_deletes_the_file(data_root, server, mirror_dir, tmp_path):
    root = tmp_path / "data"
    seed_english(data_root, root)
    upstream = mirror_dir / AF_UD.lstrip("/")
    bad = upstream / "af_afribooms-ud-dev.conllu"
    good = bad.read_bytes()
    try:
        bad.write_bytes(good.replace(b"\tNOUN\t", b"\tVERB\t", 1))
        with pytest.raises(DataError) as exc_info:
            xfetch.fetch(["af"], root, mirror=server.url, parts=("ud",), progress=False)
    finally:
        bad.write_bytes(good)
    message = str(exc_info.value)
    expected = manifest(data_root)["ud/af/dev.conllu"]
    assert "ud/af/dev.conllu" in message and f"expected sha256 {expected}" in message
    assert re.search(r"got [0-9a-f]{64}", message)
    assert not (root / "ud/af/dev.conllu").exists()
    assert leftovers(root) == []
    # With the mirror repaired, the next run succeeds.
    xfetch.fetch(["af"], root, mirror=server.url, parts=("ud",), progress=False)
    assert file_checksum(root / "ud/af/dev.conllu") == expected


def test_bad_upstream_piece_of_a_joined_file_is_not_reused(data_root, server, mirror_dir, tmp_path):
    root = tmp_path / "data"
    piece = mirror_dir / "facebookresearch/LASER/74bc6ae7ffb7cba670fe0f428d0ede9f666fb821"
    piece = piece / "data/tatoeba/v1/tatoeba.afr-eng.afr"
    good = piece.read_bytes()
    try:
        piece.write_bytes(good.replace(b"\n", b" \n", 1))
        with pytest.raises(DataError, match="checksum mismatch for tatoeba/af-en.tsv"):
            xfetch.fetch(["af"], root, mirror=server.url, parts=("tatoeba",), progress=False)
    finally:
        piece.write_bytes(good)
    assert not (root / "tatoeba/af-en.tsv").exists()
    assert [p for p in (root / xfetch.STAGING).rglob("*") if p.is_file()] == []
    xfetch.fetch(["af"], root, mirror=server.url, parts=("tatoeba",), progress=False)
    assert (root / "tatoeba/af-en.tsv").read_bytes() == (
        data_root / "tatoeba/af-en.tsv"
    ).read_bytes()
    assert leftovers(root) == []


def test_unknown_language_and_part(tmp_path):
    with pytest.raises(DataError, match=r"unknown language\(s\) 'xx'; available: af, ar, bg"):
        xfetch.fetch(["xx"], tmp_path)
    with pytest.raises(DataError, match=r"unknown part\(s\) 'bible'"):
        xfetch.fetch(["de"], tmp_path, parts=("bible",))


def test_sources_table_covers_the_manifest(data_root):
    sources = xfetch.load_sources()
    assert {s.path: s.sha256 for s in sources} == {
        path: sha for path, sha in manifest(data_root).items() if path != "README.md"
    }
    rows = read_tsv(data_root / "MANIFEST.tsv", ("path", "bytes", "sha256", "lines"))
    assert {s.path: s.size for s in sources} == {p: int(b) for p, b, _, _ in rows if p in {
        s.path for s in sources}}  # fmt: skip
    assert all(u.startswith(xfetch.UPSTREAM + "/") for s in sources for u in s.urls)


def test_ud_urls_carry_the_full_verified_commit(data_root):
    """Abbreviated commits need not resolve on GitHub; every UD URL names the full 40-hex commit
    that ``ud_commits.tsv`` verified against the file's checksum."""
    verified = {
        (row[0], row[3]): row[2]
        for row in read_tsv(data_root / "ud_commits.tsv", UD_COMMIT_COLUMNS)
        if row[4] == "yes"
    }
    ud_urls = [urlparse(u).path for s in xfetch.load_sources() if s.part == "ud" for u in s.urls]
    assert ud_urls
    for path in ud_urls:
        _, _, repo, commit, name = path.split("/")
        assert re.fullmatch(r"[0-9a-f]{40}", commit), path
        assert verified[(repo, name)] == commit, path


def test_command_line_says_where_the_data_went(data_root, server, tmp_path):
    root = tmp_path / "cli-data"
    seed_english(data_root, root)
    parser = argparse.ArgumentParser()
    xfetch.add_fetch_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "fetch",
            "--langs",
            "mr",
            "--parts",
            "ud",
            "--root",
            str(root),
            "--mirror",
            server.url,
            "--quiet",
        ]  # fmt: skip
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.func(args) == 0
    assert f"export XLCORE_DATA={root}" in out.getvalue()
    assert (root / "ud/mr/test.conllu").is_file()


# ---------------------------------------------------------------------------------------------
# A build without a data root


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    monkeypatch.delenv("XLCORE_DATA", raising=False)
    monkeypatch.setenv("XLCORE_CACHE", str(tmp_path / "cache"))
    return monkeypatch


def test_a_build_without_data_fetches_what_its_profile_reads(
    no_data, data_root, server, tmp_path, capsys
):
    no_data.setenv(xfetch.MIRROR_ENV, server.url)
    config = make_config("mini", {"tgt_langs": list(LANGS), "pairs": ["en-af"]})
    wanted = xfetch.plan(*fetch_plan(config))
    source = provide(config, progress=False)
    root = tmp_path / "cache" / "data"
    assert source.kind == "download" and source.root == root
    mb = sum(s.size for s in wanted) / 1e6
    assert f"fetching the {len(wanted)} files ({mb:.1f} MB) that profile mini needs" in (
        capsys.readouterr().out
    )
    expected = manifest(data_root)
    assert {s.path for s in wanted} >= {"ud/mr/test.conllu", "tatoeba/af-en.tsv"}
    assert all(file_checksum(root / s.path) == expected[s.path] for s in wanted)
    assert leftovers(root) == []
    requests = len(server.requests)
    assert provide(config, progress=False) == source
    assert len(server.requests) == requests and capsys.readouterr().out == ""


def test_offline_build_without_data_names_the_two_ways_on(no_data, tmp_path):
    no_data.setenv(xfetch.MIRROR_ENV, "http://127.0.0.1:9")  # the discard port: refused
    with pytest.raises(DataError) as exc_info:
        provide(make_config("mini"), progress=False)
    message = str(exc_info.value)
    assert "public sources cannot be reached" in message
    assert "set XLCORE_DATA to a data root" in message and "`make book DATA=sample`" in message
    assert leftovers(tmp_path / "cache") == []
    no_data.setenv("XLCORE_DATA", "sample")
    assert provide(make_config("mini"), progress=False).kind == "sample"
