"""`experiments.resultdiff` and `reproduce/compare_results.py` on hand-built table files whose differences are known."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from soundctm.experiments.resultdiff import compare_dirs, compare_tables, load_table, markdown

ROOT = Path(__file__).resolve().parents[1]


def _row(name, fd, clap=None, seconds=None):
    metrics = {"FD[tiny-evt]": {"value": fd, "lo": fd - 1, "hi": fd + 1}}
    if clap is not None:
        metrics["CLAP[tiny-clap]"] = {"value": clap, "lo": clap - 0.01, "hi": clap + 0.01}
    return {"row": name, "metrics": metrics, "seconds": seconds}


def _claim(name, supported, self_test=None):
    return {"claim": name, "supported": supported,
            "self_test": None if self_test is None else {"claim": f"{name}/self-test", "supported": self_test}}


def _table(rows, claims):
    return {"meta": {"table": "tablex"}, "rows": rows, "claims": claims}


A = _table([_row("teacher", 100.0, 0.5, seconds=[1.0]), _row("student-1", 200.0, 0.4), _row("zeros", 500.0, 0.0)],
           [_claim("(a)", True), _claim("(b)", True, False), _claim("(c)", False, False)])
# FD of student-1 moves by 1 % (the largest FD change), teacher by 0.1 %; CLAP of teacher by 2 %; zeros' CLAP
# stays 0; timing differs (ignored); claim (b)'s self-test and claim (c) flip; a row is missing, one is new
B = _table([_row("teacher", 100.1, 0.51, seconds=[9.0]), _row("student-1", 202.0, 0.4), _row("zeros", 500.0, 0.0),
            _row("noise", 300.0)],
           [_claim("(a)", True), _claim("(b)", True, True), _claim("(c)", True, False)])


def test_largest_relative_difference_and_its_row():
    d = compare_tables(A, B)
    by = {m.column: m for m in d.metrics}
    assert set(by) == {"FD[tiny-evt]", "CLAP[tiny-clap]"}
    assert by["FD[tiny-evt]"].row == "student-1" and by["FD[tiny-evt]"].max_rel == pytest.approx(0.01)
    assert (by["FD[tiny-evt]"].a, by["FD[tiny-evt]"].b) == (200.0, 202.0)
    assert by["CLAP[tiny-clap]"].row == "teacher" and by["CLAP[tiny-clap]"].max_rel == pytest.approx(0.02)
    assert d.max_rel == pytest.approx(0.02)
    assert d.only_a == [] and d.only_b == ["noise"]


def test_verdicts_and_self_tests_that_differ_are_listed():
    d = compare_tables(A, B)
    assert d.n_claims == 3
    assert sorted(d.flips) == ["(b) self-test: NOT SUPPORTED -> SUPPORTED", "(c): NOT SUPPORTED -> SUPPORTED"]
    assert compare_tables(A, A).flips == [] and compare_tables(A, A).max_rel == 0.0


def test_claims_are_counted_by_name_even_when_the_name_holds_a_colon():
    # the instrument's paired claims are named "paired: teacher better than teacher-euler-1 (fd)"
    a = _table([_row("r", 1.0)], [_claim("paired: x (fd)", True, False), _claim("paired: x (kl)", True, False)])
    b = _table([_row("r", 1.0)], [_claim("paired: x (fd)", False, True), _claim("paired: x (kl)", False, False)])
    d = compare_tables(a, b)
    assert d.differing == {"paired: x (fd)", "paired: x (kl)"} and len(d.flips) == 3
    assert "- tablex: 0 of 2 claims decided the same way" in markdown([d])


def test_a_zero_reference_value_compares_absolutely():
    a = _table([_row("r", 0.0)], [])
    b = _table([_row("r", 0.25)], [])
    assert compare_tables(a, b).metrics[0].max_rel == pytest.approx(0.25)


def _write(folder: Path, tables: dict):
    folder.mkdir(parents=True, exist_ok=True)
    for name, t in tables.items():
        (folder / f"{name}.json").write_text(json.dumps(t))


def test_folders_compare_the_tables_they_share_and_skip_other_json(tmp_path):
    _write(tmp_path / "a", {"tablex": A, "only_here": A, "components": {"vae": 1}})
    _write(tmp_path / "b", {"tablex": B, "components": {"vae": 2}})
    diffs = compare_dirs(tmp_path / "a", tmp_path / "b")
    assert [d.name for d in diffs] == ["tablex"]
    with pytest.raises(ValueError, match="only_here"):
        compare_dirs(tmp_path / "a", tmp_path / "b", tables=["only_here"])
    with pytest.raises(ValueError, match="not a folder"):
        compare_dirs(tmp_path / "a", tmp_path / "nowhere")


def test_a_file_that_is_not_a_table_is_named(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        load_table(p)


def test_the_command_exits_1_on_a_flipped_verdict_and_0_when_the_same(tmp_path):
    _write(tmp_path / "a", {"tablex": A})
    _write(tmp_path / "b", {"tablex": B})
    _write(tmp_path / "c", {"tablex": A})
    cmd = [sys.executable, str(ROOT / "reproduce" / "compare_results.py")]
    flipped = subprocess.run(cmd + [str(tmp_path / "a"), str(tmp_path / "b")], capture_output=True, text=True)
    assert flipped.returncode == 1, flipped.stderr
    assert "| tablex | FD[tiny-evt] | 1.00e-02 | student-1 | 200 | 202 |" in flipped.stdout
    assert "1 of 3 claims decided the same way" in flipped.stdout
    same = subprocess.run(cmd + [str(tmp_path / "a"), str(tmp_path / "c")], capture_output=True, text=True)
    assert same.returncode == 0 and "3 of 3 claims decided the same way" in same.stdout
    tol = subprocess.run(cmd + [str(tmp_path / "a"), str(tmp_path / "c"), "--tol", "0"], capture_output=True, text=True)
    assert tol.returncode == 0
    missing = subprocess.run(cmd + [str(tmp_path / "a"), str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2 and "not a folder" in missing.stderr
