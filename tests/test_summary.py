"""The summary of verdicts (soundctm.experiments.summary, reproduce/summary.py): a results folder written by
hand in the tables' formats gives the rows and counts written here by hand; every claim kind's detail line (as
`experiments.claims.check` writes it) is read back to its rows and statistic; the committed results/tiny is
summarised claim for claim within the README's line budget; the script rewrites only its README block, and
--check tells a stale block from a current one."""

import json
from pathlib import Path

import numpy as np
import pytest
from scripts import load_script

from soundctm.experiments.claims import check
from soundctm.experiments.spec import Claim
from soundctm.experiments.stats import Dist
from soundctm.experiments.summary import (
    Measure,
    counts,
    interval_text,
    ours_text,
    paper_text,
    render_markdown,
    summarize,
)

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "results" / "tiny"

M = lambda v, lo, hi: {"value": v, "lo": lo, "hi": hi, "level": 0.95, "n_boot": 200}
META = {"git_commit": "abc123", "command": "all.py", "device": "CPU (test)", "time": "2026-01-01T00:00:00",
        "n_units": 3, "captions_per_unit": 1, "samples_per_caption": 1, "n_boot": 200}


def _row(name, paper, metrics, seconds=None, source="sampler"):
    return {"row": name, "model": name, "source": source, "sampler": "ctm", "steps": 1, "omega": 5.0, "nu": 1.0,
            "gamma": 0.0, "n_clips": 3, "not_run": None, "paper": paper, "metrics": metrics, "seconds": seconds,
            "train_memory_mib": None, "per_training_seed": {}}


def _claim(cid, text, label, detail, est=None, lo=None, hi=None, self_test=None, supported=None, broken=False):
    return {"claim": cid, "text": text, "supported": supported if supported is not None else label == "SUPPORTED",
            "estimate": est, "lo": lo, "hi": hi, "margin": 0.0, "detail": detail, "self_test": self_test,
            "label": label, "broken": broken}


PASSED = {"claim": "x/self-test", "supported": False, "detail": "zeros: no"}


def _results(root: Path) -> Path:
    """table3.json (a quality table: six claims, one of each verdict and statistic), table8.json (a speed table:
    two verdicts without labels, as Table 8 writes them), and two files that are no tables."""
    fd, clap = "FD[tiny-evt]", "CLAP[tiny-clap]"
    t3 = {"meta": META, "columns": {"fd": fd, "clap": clap}, "memory_column": None, "rows": [
        _row("teacher", {"FD_openl3": 72.34, "CLAP": 0.36, "seconds_H100": 2.5},
             {fd: M(117.5, 106.2, 127.6), clap: M(0.66, 0.64, 0.68)}, [0.7, 0.8, 0.75]),
        _row("student-1", {"FD_openl3": 84.07, "CLAP": 0.36, "seconds_H100": 0.06},
             {fd: M(185.2, 175.4, 195.5), clap: M(0.55, 0.52, 0.58)}, [0.01, 0.02, 0.015]),
        _row("student-16", {"FD_openl3": 72.24, "CLAP": 0.42, "seconds_H100": 0.71},
             {fd: M(133.7, 121.0, 147.2), clap: M(0.62, 0.6, 0.65)}),
        _row("zeros", {}, {fd: M(520.1, 520.1, 520.1)}, source="zeros"),
    ], "claims": [
        _claim("(a)", "the student is 10x faster", "SUPPORTED", "speed-up 50.0x (least favourable pairing of repeats "
               "35.0x; threshold 10x; teacher 0.7500 s, student-1 0.0150 s per sample)", 50.0, 35.0, 80.0),
        _claim("(b-fd)", "quality improves (fd)", "SUPPORTED", "fd: student-1 185.2 -> student-16 133.7; improvement "
               "+51.5 [+37.09, +66.73] (needs the interval above 0)", 51.5, 37.09, 66.73, PASSED),
        _claim("(c-clap)", "close to the teacher (clap, within 0.1 on q)", "NOT SUPPORTED",
               "clap on the q scale (0 = decoded zeros, 1 = VAE reconstruction): q(student-16) 0.610, q(teacher) "
               "0.660; difference -0.050 [-0.120, +0.020] (needs the lower end >= -0.1)", -0.05, -0.12, 0.02, PASSED),
        _claim("(d)", "a loose claim", "BROKEN (the trivial baseline passes it)", "clap: teacher 0.66 -> student-16 "
               "0.62; improvement -0.04 [-0.06, -0.02] (needs the interval above -1)", -0.04, -0.06, -0.02,
               {"claim": "(d)/self-test", "supported": True, "detail": "zeros pass"}, supported=True, broken=True),
        _claim("teacher << zeros (fd)", "", "SUPPORTED", "fd: teacher 117.5 [106.2, 127.6] << zeros 520.1 "
               "[520.1, 520.1]", -402.6, 106.2, 127.6),
        _claim("(f)", "listeners prefer it", "NOT DECIDED", "no ratings yet (run the kit, then --analyze mushra.csv)",
               supported=False),
    ]}
    t8 = {"meta": {**META, "kind": "speed"}, "kind": "speed", "title": "Table 8: inference speed",
          "description": "", "paper_device": "NVIDIA A100, batch 1", "steps": [1], "rows": [
              {"system": "soundctm", "label": "SoundCTM", "uncond_at_nu_1": "evaluated", "median": {"1": 0.019},
               "paper": {"1": 0.141}, "seconds": {"1": [0.019]}},
              {"system": "soundctm", "label": "SoundCTM", "uncond_at_nu_1": "skipped", "median": {"1": 0.018},
               "paper": {"1": 0.141}, "seconds": {"1": [0.018]}},
              {"system": "audiolcm", "label": "AudioLCM", "uncond_at_nu_1": "skipped", "median": {"1": 0.02},
               "paper": {"1": 0.169}, "seconds": {"1": [0.02]}}],
          "verdicts": [
              {"claim": "(1-audiolcm)", "text": "faster than audiolcm", "supported": True, "estimate": 1.11,
               "lo": 1.04, "hi": 1.17, "margin": 1.0, "self_test": None, "detail": "speed-up 1.1x (least favourable "
               "pairing of repeats 1.0x; threshold 1x; audiolcm-1 0.0200 s, soundctm-1 0.0180 s per sample)"},
              {"claim": "(1-peer)", "text": "faster than a peer not timed", "supported": False, "estimate": 0.9,
               "lo": 0.8, "hi": 1.0, "margin": 1.0, "self_test": None, "detail": "speed-up 0.9x (least favourable "
               "pairing of repeats 0.8x; threshold 1x; peer-1 0.0100 s, soundctm-1 0.0180 s per sample)"}]}
    root.mkdir(parents=True, exist_ok=True)
    (root / "table3.json").write_text(json.dumps(t3))
    (root / "table3.md").write_text("# Table 3: full-band objective comparison — tiny tier\n\nText.\n")
    (root / "table8.json").write_text(json.dumps(t8))
    (root / "components.json").write_text(json.dumps({"tier": "tiny"}))
    (root / "broken.json").write_text('{"claims": ')
    return root


def test_a_hand_written_folder_gives_the_rows_and_counts_written_by_hand(tmp_path):
    skipped = []
    rows = summarize(_results(tmp_path / "r"), skipped)
    assert sorted(n for n, _ in skipped) == ["broken.json", "components.json"]
    got = [(r.table, r.claim, r.verdict, r.self_test, r.systems, r.statistic, r.metric, r.paper_column, r.paper,
            r.ours, r.estimate, r.lo, r.hi) for r in rows]
    fd, clap = "FD[tiny-evt]", "CLAP[tiny-clap]"
    assert got == [
        ("table3", "(a)", "supported", None, ("student-1", "teacher"), "speed-up", None, "seconds_H100", (0.06, 2.5),
         (Measure(0.015), Measure(0.75)), 50.0, 35.0, 80.0),
        ("table3", "(b-fd)", "supported", "passed", ("student-1", "student-16"), "improvement", fd, "FD_openl3",
         (84.07, 72.24), (Measure(185.2, 175.4, 195.5), Measure(133.7, 121.0, 147.2)), 51.5, 37.09, 66.73),
        ("table3", "(c-clap)", "not supported", "passed", ("student-16", "teacher"), "q difference", clap, "CLAP",
         (0.42, 0.36), (Measure(0.62, 0.6, 0.65), Measure(0.66, 0.64, 0.68)), -0.05, -0.12, 0.02),
        ("table3", "(d)", "broken", "failed", ("teacher", "student-16"), "improvement", clap, "CLAP", (0.36, 0.42),
         (Measure(0.66, 0.64, 0.68), Measure(0.62, 0.6, 0.65)), -0.04, -0.06, -0.02),
        # "a << b": the JSON's lo / hi are a's own interval, so the statistic column shows none
        ("table3", "teacher << zeros (fd)", "supported", None, ("teacher", "zeros"), "intervals", fd, "FD_openl3",
         (72.34, None), (Measure(117.5, 106.2, 127.6), Measure(520.1, 520.1, 520.1)), None, None, None),
        ("table3", "(f)", "inconclusive", None, (), None, None, None, (), (), None, None, None),
        # Table 8: the system's row timed with the unconditional branch skipped, at the claim's step count
        ("table8", "(1-audiolcm)", "supported", None, ("soundctm-1", "audiolcm-1"), "speed-up", None,
         "seconds (NVIDIA A100, batch 1)", (0.141, 0.169), (Measure(0.018), Measure(0.02)), 1.11, 1.04, 1.17),
        ("table8", "(1-peer)", "not supported", None, ("soundctm-1", "peer-1"), "speed-up", None,
         "seconds (NVIDIA A100, batch 1)", (0.141, None), (Measure(0.018), None), 0.9, 0.8, 1.0),
    ]
    assert rows[0].title == "Table 3: full-band objective comparison" and rows[-1].title == "Table 8: inference speed"
    assert rows[3].label == "BROKEN (the trivial baseline passes it)" and rows[5].label == "NOT DECIDED"
    assert rows[6].label == "SUPPORTED" and rows[7].label == "NOT SUPPORTED"  # no label in the JSON: its flag
    assert counts(rows) == {"table3": {"supported": 3, "not supported": 1, "inconclusive": 1, "broken": 1},
                            "table8": {"supported": 1, "not supported": 1, "inconclusive": 0, "broken": 0}}
    assert paper_text(rows[1]) == "84.07 → 72.24" and paper_text(rows[5]) == "–"
    assert ours_text(rows[1]) == "student-1 185.2 [175.4, 195.5] → student-16 133.7 [121, 147.2]"
    assert interval_text(rows[1]) == "improvement +51.5 [+37.09, +66.73]"
    assert interval_text(rows[2]) == "q difference −0.05 [−0.12, +0.02]"
    assert interval_text(rows[0]) == "speed-up 50× [35, 80]" and interval_text(rows[4]) == "95 % intervals apart"

    md = render_markdown(rows, link=lambda t: f"results/{t}.md").splitlines()  # small enough: the full table
    assert md[0].startswith("8 claims in 2 tables")
    assert md[2:7] == ["| table | claims | supported | not supported | inconclusive | broken |",
                       "|---|--:|--:|--:|--:|--:|",
                       "| [Table 3: full-band objective comparison](results/table3.md) | 6 | 3 | 1 | 1 | 1 |",
                       "| [Table 8: inference speed](results/table8.md) | 2 | 1 | 1 | 0 | 0 |",
                       "| **all** | **8** | **4** | **2** | **1** | **1** |"]
    assert ("| Table 3 | (b-fd) quality improves (fd) | 84.07 → 72.24 | student-1 185.2 [175.4, 195.5] → student-16 "
            "133.7 [121, 147.2] | improvement +51.5 [+37.09, +66.73] | supported | passed |") in md
    assert sum(line.startswith("| Table ") for line in md) == 8 and len(md) <= 40

    short = render_markdown(rows, max_lines=10).splitlines()  # too long for 10 lines: the claims not supported
    assert short[2:7] == [line.replace("](results/table3.md)", "").replace("](results/table8.md)", "")
                          .replace("[", "", 1) for line in md[2:7]]
    assert max(len(line) for line in short) <= 160  # a long item wraps onto indented continuation lines
    bullets = []
    for line in short:
        if line.startswith("- "):
            bullets.append(line)
        elif line.startswith("  ") and bullets:
            bullets[-1] += " " + line.strip()
    assert bullets == [
        "- **Table 3**: close to the teacher: clap q difference −0.05 [−0.12, +0.02]; (d) a loose claim: **broken** "
        "improvement −0.04 [−0.06, −0.02]; (f) listeners prefer it: **inconclusive**",
        "- **Table 8**: (1-peer) faster than a peer not timed: speed-up 0.9× [0.8, 1]"]


def test_every_claim_kind_as_check_writes_it_is_read_back_to_its_rows_and_statistic(tmp_path):
    d = lambda v: Dist(v, v + np.linspace(-1, 1, 41) * v / 10)
    dists = {"a": {"fd": d(100.0), "clap": d(0.5)}, "b": {"fd": d(50.0), "clap": d(0.6)},
             "zeros": {"fd": d(500.0), "clap": d(0.05)}, "vae-recon": {"fd": d(10.0), "clap": d(0.7)}}
    claims = [Claim("(i)", "", "improves", "fd", "a", "b", subject="b"),
              Claim("(c)", "", "close", "clap", "b", "a", margin=0.1, subject="b"),
              Claim("(k)", "", "comparable", "fd", "a", "b", margin=0.1),
              Claim("(s)", "", "separated", "fd", "b", "a"), Claim("(o)", "", "ordered", "clap", "b", "a"),
              Claim("(f)", "", "faster", None, "b", "a", margin=2.0),
              Claim("(h)", "", "heavier", None, "a", "b", margin=1.1)]
    verdicts = [check(c, dists, {"a": [1.0, 1.1], "b": [0.1, 0.12]}, {"a": [900.0], "b": [300.0]}).to_dict()
                for c in claims]
    rows = [_row(n, {}, {"FD[x]": M(v["fd"].value, *v["fd"].interval()),
                         "CLAP[y]": M(v["clap"].value, *v["clap"].interval())}, [1.0, 1.1] if n == "a" else None)
            for n, v in dists.items()]
    rows[0]["train_memory_mib"], rows[1]["train_memory_mib"] = [900.0], [300.0]
    rec = {"meta": META, "columns": {"fd": "FD[x]", "clap": "CLAP[y]"}, "rows": rows, "claims": verdicts}
    (tmp_path / "tablez.json").write_text(json.dumps(rec))
    got = summarize(tmp_path)
    assert [(r.claim, r.systems, r.statistic, r.metric) for r in got] == [
        ("(i)", ("a", "b"), "improvement", "FD[x]"), ("(c)", ("b", "a"), "q difference", "CLAP[y]"),
        ("(k)", ("a", "b"), "q difference", "FD[x]"), ("(s)", ("b", "a"), "intervals", "FD[x]"),
        ("(o)", ("b", "a"), "intervals", "CLAP[y]"), ("(f)", ("b", "a"), "speed-up", None),
        ("(h)", ("a", "b"), "memory ratio", None)]
    assert [r.verdict for r in got] == ["supported" if v["supported"] else "not supported" for v in verdicts]
    assert got[5].ours == (None, Measure(1.05)) and got[6].ours == (Measure(900.0), Measure(300.0))
    assert got[0].ours[0] == Measure(100.0, *dists["a"]["fd"].interval())


def _claims_in(folder: Path) -> list[tuple[str, str]]:
    """(table, claim id) of every claim of every table JSON of `folder`, read without the summary's code."""
    out = []
    for p in sorted(folder.glob("*.json")):
        rec = json.loads(p.read_text())
        if not isinstance(rec, dict):
            continue
        claims = rec.get("verdicts") if rec.get("kind") == "speed" else rec.get("claims")
        if isinstance(claims, list):
            out += [(p.stem, c["claim"]) for c in claims]
    return out


def test_the_committed_results_are_summarised_claim_for_claim_within_the_readme_budget():
    rows = summarize(TINY)
    expected = _claims_in(TINY)
    assert len(expected) > 100
    assert sorted((r.table, r.claim) for r in rows) == sorted(expected)
    assert rows[0].table == "table3" and {r.table for r in rows} >= {"table3", "table8", "instrument"}
    assert all(r.verdict in ("supported", "not supported", "inconclusive", "broken") for r in rows)
    by_label = {"SUPPORTED": "supported", "NOT SUPPORTED": "not supported"}
    for r in rows:
        assert r.verdict == by_label.get(r.label, r.verdict)  # the JSON's verdict, not another one
    md = load_script("summary").block(rows, TINY, REPO / "README.md")
    lines = md.splitlines()
    assert len(lines) <= load_script("summary").MAX_LINES
    assert max(len(x) for x in lines) <= 200  # the README's longest line
    assert lines[-1].startswith(("- ", "  ", "| "))
    assert f"**{len(rows)}**" in md and all(f"({t}.md)" in md.replace("results/tiny/", "") for t, _ in expected)
    n_not = sum(r.verdict == "not supported" for r in rows)
    assert f"| **all** | **{len(rows)}** | **{len(rows) - n_not}** | **{n_not}** | **0** | **0** |" in md


def test_the_script_rewrites_only_its_block_and_check_tells_stale_from_current(tmp_path, capsys):
    mod = load_script("summary")
    results = _results(tmp_path / "results" / "tiny")
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\nno block here\n")
    assert mod.main(["--results", str(results), "--readme", str(readme), "--check"]) == 2
    assert mod.main(["--results", str(results), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("no <!-- verdicts:begin --> ... <!-- verdicts:end --> block" in e for e in err)
    assert readme.read_text() == "# title\n\nno block here\n"

    readme.write_text(f"# title\n\nbefore\n{mod.BEGIN}\nold text\n{mod.END}\nafter\n")
    assert mod.main(["--results", str(results), "--readme", str(readme), "--check"]) == 1
    assert mod.main(["--results", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    body = render_markdown(summarize(results), link=lambda t: f"results/tiny/{t}.md" if t == "table3"
                           else f"results/tiny/{t}.json")  # table8 has no .md here: its JSON
    assert text == f"# title\n\nbefore\n{mod.BEGIN}\n{body}{mod.END}\nafter\n"
    assert mod.main(["--results", str(results), "--readme", str(readme), "--check"]) == 0
    assert mod.main(["--results", str(results), "--readme", str(readme)]) == 0 and readme.read_text() == text
    (results / "table8.json").unlink()  # the results moved on: the block is stale
    assert mod.main(["--results", str(results), "--readme", str(readme), "--check"]) == 1


def test_the_readme_block_is_current_when_the_readme_has_one():
    text = (REPO / "README.md").read_text()
    mod = load_script("summary")
    if mod.BEGIN not in text:
        pytest.skip("README.md has no verdicts block yet")
    assert mod.main(["--check"]) == 0, "run python reproduce/summary.py"
