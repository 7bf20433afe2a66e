"""The progress display of the artifact graph (experiments.progress): counts and the ETA against hand
computations on a fake clock; the runner's events for trainings, scores and pair rows, fresh and cached;
reproduce/all.py's plan, per-table item sets and progress lines on a tiny configuration."""

import json

import pytest
from scripts import load_script
from test_pairs import S1, S4, _tier

from soundctm.experiments import pairs as P
from soundctm.experiments.progress import REUSED_S, Progress, fmt_seconds, training_keys
from soundctm.experiments.runner import Runner, train_key
from soundctm.experiments.spec import Items, Row, Table

pytestmark = pytest.mark.usefixtures("one_thread")


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_counts_eta_and_line_by_hand():
    clock, lines = Clock(), []
    p = Progress(log=lines.append, workers=2, clock=clock)
    p.plan("train", ["a", "b", "c", "d"])
    p.plan("score", [f"s{i}" for i in range(5)])
    p.plan_tables(2)
    p("train", "a", "start")
    clock.t += 30
    p("train", "a", "done", 30.0)  # built
    p("train", "b", "done", REUSED_S / 2)  # found by its maker: reused, not measured
    p("score", "s0", "cached")
    p("score", "s1", "start")
    p("score", "s1", "done", 10.0)
    p("score", "s1", "cached")  # a finished node read again changes nothing
    assert p.counts("train") == {"total": 4, "finished": 2, "cached": 0, "reused": 1, "running": 0}
    assert p.counts("score") == {"total": 5, "finished": 2, "cached": 1, "reused": 0, "running": 0}
    # ETA: train 2 left x 30 s / min(2 workers, 2) + score 3 left x 10 s / 2 = 30 + 15
    assert p.eta() == (pytest.approx(45.0), True)
    assert lines[-1] == ("[progress 0:00:30] train 2/4 (1 reused) | score 2/5 (1 cached) | tables 0/2 | "
                         "ETA 0:00:45")
    p("train", "c", "start")
    p.plan("pair", ["x"])  # a kind without a measured node: the ETA is a lower bound
    p.table_done("t1")
    assert lines[-1] == ("[progress 0:00:30] train 2/4 (1 reused) | score 2/5 (1 cached) | pair 0/1 | tables 1/2 | "
                         "running: train c | ETA >= 0:00:45 | wrote t1")
    assert fmt_seconds(3725.4) == "1:02:05"
    with pytest.raises(ValueError, match="state"):
        p("train", "d", "finished")


def test_runner_events_fresh_then_cached(tmp_path):
    tier = _tier(tmp_path)
    table = Table("t", "t", (S1, P.pair_row("near", S1, S4)), metrics=("clap", "mel"))
    events = []
    runner = Runner(tier, tmp_path / "cache", store=tmp_path / "store", log=lambda *a: None, workers=1)
    runner.events = lambda *e: events.append(e)
    planned = [runner.score_node(r) for r in runner.prepare_rows([table])]  # known before any training
    assert not runner.models.exports and len(set(planned)) == 2
    runner.prepare([table])
    runner.run(table)
    train = [e for e in events if e[0] == "train"]
    keys = {train_key(r, s) for r in (S1.run, S1.run.teacher) for s in r.seeds}
    assert {e[1] for e in train} == keys == set(training_keys([table]))
    assert [e[2] for e in train] == ["start", "done"] * len(keys)  # one training at a time, in process
    scored = {e[1] for e in events if e[0] == "score" and e[2] == "done"}
    assert scored == set(planned) == {runner.score_node(r) for r in runner.prepare_rows([table])}
    assert {runner.score_node(r) for r in (S1, S4)} == scored  # the pair's rows, not the pair row
    pair = [e for e in events if e[0] == "pair"]
    assert [e[1:3] for e in pair] == [(runner.pair_node(table.row("near"), table.metrics), "start"),
                                      (runner.pair_node(table.row("near"), table.metrics), "done")]
    events.clear()
    again = Runner(tier, tmp_path / "cache", store=tmp_path / "store", log=lambda *a: None, workers=1)
    again.events = lambda *e: events.append(e)
    again.run(table)
    assert {e[2] for e in events if e[0] == "score"} == {"cached"}
    assert all(e[3] < REUSED_S for e in events if e[2] == "done")  # found, not built again


def test_all_py_plans_runs_and_reports_progress(tmp_path, monkeypatch, capsys):
    all_py = load_script("all")
    import soundctm.experiments.main as M

    tier = _tier(tmp_path)
    tables = {"a": Table("a", "a", (S1, Row("zeros", source="zeros")), metrics=("clap",)),
              "b": Table("b", "b", (P.pair_row("near", S1, S4),), metrics=("mel",),
                         items=Items(samples_per_caption=1))}
    monkeypatch.setattr(all_py, "get_table", lambda k: tables[k])
    make = lambda args: Runner(tier, tmp_path / "cache", store=tmp_path / "store", log=lambda *a: None, workers=1)
    monkeypatch.setattr(all_py, "make_runner", make)  # all.py imports it at module level
    monkeypatch.setattr(M, "make_runner", make)
    out = tmp_path / "out"
    assert all_py.main(["--tables", "a,b", "--out", str(out), "--no-report"]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[progress")]
    # the whole plan before anything is built (the score keys do not need the trained models): 3 trainings
    # (teacher + 2 student seeds), 2 rows of a (S1 and zeros) + 2 of b's smaller item set (S1 and S4 for its
    # pair row); then the trainings
    (planned,) = [x for x in lines if "planned" in x]
    assert lines[0] == planned
    assert "train 0/3" in planned and "score 0/4" in planned and "pair 0/1" in planned and "tables 0/2" in planned
    assert "train 1/3" in lines[1]
    assert "train 3/3" in lines[-1] and "score 4/4" in lines[-1] and "pair 1/1" in lines[-1]
    assert "tables 2/2" in lines[-1] and "wrote b" in lines[-1]
    a, b = (json.loads((out / f"{n}.json").read_text()) for n in "ab")
    assert a["meta"]["samples_per_caption"] == 2 and a["rows"][0]["n_clips"] == 6  # the tier's 3 clips x 1 x 2
    assert b["meta"]["samples_per_caption"] == 1 and b["rows"][0]["n_clips"] == 3  # the table's own item set
