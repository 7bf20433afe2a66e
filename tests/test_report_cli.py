"""`soundctm report` writes only what it owns, into the folder it is given, and never deletes a file.

Every run is the installed console script on a copy of the committed results/tiny (its report folder and
manifest included). In a git repository made of that copy, a report changes nothing but the files it says
it wrote; `--no-audio` deletes none of the committed sounds; a file of a name it writes that no manifest
lists is refused before any work; `--out` elsewhere leaves the results folder as it was and makes a page
whose every link resolves inside the new folder. Bad result files among good ones are skipped, each named
with its reason on the console and on the page. (The one-line bad-input cases: tests/test_cli_errors.py.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "results" / "tiny"
SCRIPT = Path(sys.executable).parent / "soundctm"
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
SOUND_TAGS = ("real", "teacher", "1step", "16step")  # per caption: the real clip, the teacher, candidate, refinement
COMMITTED_SOUNDS = [f"report/{kind}/ex{i}-{tag}.{ext}" for i in range(3) for tag in SOUND_TAGS
                    for kind, ext in (("audio", "wav"), ("img", "png"))]


def _report(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), "report", "--threads", "1", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=600)


def _written(stdout: str) -> list[Path]:
    return [Path(m) for m in re.findall(r"^\[report\] wrote (.+)$", stdout, re.M)]


def _copy_tiny(dst: Path) -> Path:
    shutil.copytree(TINY, dst, ignore=shutil.ignore_patterns("checkpoints", ".work", ".report-*"))
    return dst


def _tree(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> sha256)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _git(repo: Path, *args) -> str:
    r = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=m",
                        *args], cwd=repo, capture_output=True, text=True, check=True)
    return r.stdout


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A git repository holding a copy of results/tiny and two foreign files beside the report's."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    tiny = _copy_tiny(repo / "results" / "tiny")
    (tiny / "notes.txt").write_text("a file of the user's\n")
    (tiny / "report" / "audio" / "mine.wav").write_bytes(b"not the report's")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "results")
    return repo


def _changed(repo: Path) -> list[tuple[str, str]]:
    """(status, path) of every change git sees, untracked files included."""
    out = _git(repo, "status", "--porcelain", "--untracked-files=all")
    return [(line[:2].strip(), line[3:]) for line in out.splitlines()]


def test_the_committed_report_folder_has_a_manifest_of_its_files():
    man = json.loads((TINY / "report" / "manifest.json").read_text())
    assert man["written_by"] == "soundctm report"
    assert sorted(man["files"]) == sorted(["index.html", *COMMITTED_SOUNDS])
    assert all((TINY / f).is_file() for f in man["files"])


def test_a_report_in_a_checkout_changes_only_the_files_it_says_it_wrote(checkout):
    r = _report(cwd=checkout)  # defaults: ./results/tiny, written in place, audio from the committed student
    assert r.returncode == 0, r.stderr
    tiny = checkout / "results" / "tiny"
    written = {p.resolve().relative_to(checkout.resolve()).as_posix() for p in _written(r.stdout)}
    assert written == {f"results/tiny/{f}" for f in ["index.html", "report/manifest.json", *COMMITTED_SOUNDS]}
    changed = _changed(checkout)
    assert all(status == "M" and path in written for status, path in changed), changed
    assert (tiny / "notes.txt").read_text() == "a file of the user's\n"
    assert (tiny / "report" / "audio" / "mine.wav").read_bytes() == b"not the report's"
    page = (tiny / "index.html").read_text()
    assert 'data-table="table8"' in page and 'data-table="table3"' in page
    # the verdicts first, then Table 3; every result file of the folder linked where it lies (in place)
    sections = re.findall(r'<section id="([^"]+)"', page)
    assert sections[:3] == ["verdicts", "table3", "instrument"] and "table8" in sections
    refs = _Refs()
    refs.feed(page)
    results = sorted(p.name for ext in ("json", "csv", "md") for p in tiny.glob(f"*.{ext}"))
    assert "table8.csv" in results and set(results) <= set(refs.refs)


def test_no_audio_deletes_none_of_the_committed_sounds(checkout):
    r = _report("--no-audio", cwd=checkout)
    assert r.returncode == 0, r.stderr
    tiny = checkout / "results" / "tiny"
    written = sorted(p.resolve().relative_to(tiny.resolve()).as_posix() for p in _written(r.stdout))
    assert written == ["index.html", "report/manifest.json"]
    assert f"kept {len(COMMITTED_SOUNDS)} file(s) of an earlier report" in r.stdout
    # only the page changed; the sounds it no longer links stay, and stay the report's
    assert [path for _, path in _changed(checkout)] == ["results/tiny/index.html"]
    man = json.loads((tiny / "report" / "manifest.json").read_text())
    assert sorted(man["files"]) == sorted(["index.html", *COMMITTED_SOUNDS])
    assert "No audio examples: disabled (--no-audio)" in (tiny / "index.html").read_text()


def test_a_file_it_did_not_write_is_refused_before_any_work(tmp_path):
    results = tmp_path / "tiny"
    results.mkdir()
    for ext in ("json", "md"):
        shutil.copy(TINY / f"table3.{ext}", results)
    (results / "index.html").write_text("<p>my own page</p>")  # no manifest: not the report's
    before = _tree(results)
    r = _report("--results", results, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not written by soundctm report" in lines[0] and "index.html" in lines[0]
    assert _tree(results) == before and sorted(os.listdir(results)) == ["index.html", "table3.json", "table3.md"]
    # a manifest that is not one is refused too, and --overwrite replaces the named files (deleting none)
    (results / "report").mkdir()
    (results / "report" / "manifest.json").write_text('{"files": ["table3.json"]}')
    r = _report("--results", results, "--no-audio", cwd=tmp_path)
    assert r.returncode == 2 and "is not a manifest written by soundctm report" in r.stderr
    r = _report("--results", results, "--no-audio", "--overwrite", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (results / "table3.json").read_bytes() == (TINY / "table3.json").read_bytes()
    assert json.loads((results / "report" / "manifest.json").read_text())["files"] == ["index.html"]


def test_a_rerun_replaces_its_own_files_and_leaves_a_foreign_one_beside_them(tmp_path):
    results = _copy_tiny(tmp_path / "tiny")
    (results / "report" / "img" / "theirs.png").write_bytes(b"a foreign picture")
    for _ in range(2):
        r = _report("--results", results, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert len(_written(r.stdout)) == 2 + len(COMMITTED_SOUNDS)
    assert (results / "report" / "img" / "theirs.png").read_bytes() == b"a foreign picture"
    assert "theirs.png" not in (results / "index.html").read_text()  # not a figure of the results either
    assert not list(results.glob(".report-*"))  # the staging folder is gone


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href")]


def test_out_elsewhere_leaves_the_results_as_they_were_and_is_self_contained(tmp_path):
    results = _copy_tiny(tmp_path / "tiny")
    before = _tree(results)
    site = tmp_path / "site" / "tiny"
    r = _report("--results", results, "--out", site, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _tree(results) == before
    written = {p.resolve() for p in _written(r.stdout)}
    assert written == {p.resolve() for p in site.rglob("*") if p.is_file()}  # it wrote all there is, listed
    refs = _Refs()
    refs.feed((site / "index.html").read_text())
    files = [ref for ref in refs.refs if not ref.startswith("#")]
    figures = sorted(p.relative_to(results).as_posix() for p in results.glob("*.png"))
    assert sorted(f for f in files if f.startswith("report/figures/")) == [f"report/figures/{f}" for f in figures]
    data = sorted(p.name for ext in ("json", "csv", "md") for p in results.glob(f"*.{ext}"))
    assert sorted(f for f in files if f.startswith("report/files/")) == [f"report/files/{f}" for f in data]
    for f in data:  # every result file (Table 8's CSV, components.json, ...), copied beside the page
        assert (site / "report" / "files" / f).read_bytes() == (results / f).read_bytes()
    for ref in files:
        target = (site / ref).resolve()
        assert target.is_file() and target.is_relative_to(site.resolve()), ref
    for f in figures:
        assert (site / "report" / "figures" / f).read_bytes() == (results / f).read_bytes()


def test_bad_result_files_among_good_ones_are_skipped_and_named(tmp_path):
    results = tmp_path / "tiny"
    results.mkdir()
    for name in ("table3", "table8"):
        for ext in ("json", "md"):
            shutil.copy(TINY / f"{name}.{ext}", results)
    good = json.loads((TINY / "table3.json").read_text())
    (results / "table99.json").write_bytes(b'{"meta": {}, "title": "\xff\xfe"}')
    (results / "table98.json").write_text("[1, 2, 3]")
    (results / "table97.json").write_text(json.dumps({**good, "rows": 5}))
    (results / "table96.json").write_text('{"meta": ')
    bad_cell = json.loads(json.dumps(good))
    row = next(r for r in bad_cell["rows"] if r["metrics"] and not r["not_run"])
    row["metrics"][next(iter(row["metrics"]))]["value"] = "many"
    (results / "table95.json").write_text(json.dumps(bad_cell))
    expected = {"table99.json": "not UTF-8", "table98.json": "not a table result (a JSON list",
                "table97.json": "wrong shape: 'rows' is a int, not a list", "table96.json": "not JSON",
                "table95.json": "cannot be rendered"}
    r = _report("--results", results, "--no-audio", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    said = dict(re.findall(r"^\[report\] skipped .*/(table\d+\.json): (.*)$", r.stdout, re.M))
    assert set(said) == set(expected)
    for name, why in expected.items():
        assert said[name].startswith(why), (name, said[name])
    page = (results / "index.html").read_text()
    assert re.findall(r'data-table="(\w+)"', page) == ["table3", "table8"]
    shown = re.search(r'<section id="skipped">(.*?)</section>', page, re.S).group(1)
    assert sorted(re.findall(r"<code>(table\d+\.json)</code>", shown)) == sorted(expected)
