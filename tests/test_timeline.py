"""experiments.timeline on hand-built task records: totals, utilisation and work bound computed by hand, the
lane assignment (greedy interval colouring = the most tasks at once), the since/until filter, the CLI."""

import json

import pytest
from scripts import load_script

from soundctm.experiments.store import open_store
from soundctm.experiments.timeline import format_summary, gantt, lanes, read_records, summarise

# two workers over 0..100 s: a teacher 0-40 alone (worker 2 idle), then students 40-70 and 40-90, a score 70-100
RECS = [
    {"key": "train-t", "kind": "train", "start": 1000.0, "end": 1040.0},
    {"key": "train-a", "kind": "train", "start": 1040.0, "end": 1070.0},
    {"key": "train-b", "kind": "train", "start": 1040.0, "end": 1090.0},
    {"key": "score-x", "kind": "score", "start": 1070.0, "end": 1100.0},
]


def _write(root, recs):
    (root / "nodes").mkdir(parents=True, exist_ok=True)
    for r in recs:
        (root / "nodes" / f"{r['key']}.json").write_text(json.dumps(r))
    (root / "nodes" / "train-t.started.abc.1").write_text(json.dumps({"start": 1000.0}))  # not a record


def test_summary_by_hand(tmp_path):
    _write(tmp_path, RECS)
    recs = read_records(tmp_path)
    assert [r["key"] for r in recs] == ["train-t", "train-a", "train-b", "score-x"]
    s = summarise(recs, workers=2)
    # busy = 40 + 30 + 50 + 30 = 150 worker-s over a span of 100 s on 2 workers
    assert s["span_s"] == 100.0 and s["busy_s"] == 150.0
    assert s["utilisation"] == pytest.approx(150 / 200) and s["work_bound_s"] == 75.0
    assert s["kinds"] == {"score": {"tasks": 1, "seconds": 30.0, "longest_s": 30.0},
                          "train": {"tasks": 3, "seconds": 120.0, "longest_s": 50.0}}
    assert s["concurrency"] == 2
    text = format_summary(s)
    assert "4 tasks over 0:01:40" in text and "utilisation 75.0%" in text
    assert "work bound (busy / workers) 0:01:15" in text
    assert format_summary(summarise([], 2)) == "no task records"
    with pytest.raises(ValueError, match="workers"):
        summarise(recs, 0)


def test_filter_lanes_and_store_reading(tmp_path):
    store = open_store(tmp_path / "store")
    for r in RECS:
        store.write_text(f"nodes/{r['key']}.json", json.dumps(r))
    assert [r["key"] for r in read_records(store, since=1040.0)] == ["train-a", "train-b", "score-x"]
    assert [r["key"] for r in read_records(store, until=1070.0)] == ["train-t", "train-a"]
    assert lanes(read_records(store)) == [0, 0, 1, 0]  # score-x reuses lane 0, free since 1070
    three = [dict(RECS[0], end=1100.0), RECS[1], RECS[2]]
    assert lanes(three) == [0, 1, 2]
    png = gantt(read_records(store), tmp_path / "t.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_cli(tmp_path, capsys):
    cli = load_script("timeline")
    _write(tmp_path / "tiny" / "artifacts", RECS)
    assert cli.main(["--cache", str(tmp_path), "--since", "1970-01-01T00:17:20", "--png", str(tmp_path / "g.png")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 tasks over 0:01:00") and (tmp_path / "g.png").exists()  # 1040 s = 00:17:20 UTC
    assert cli.main(["--store", str(tmp_path / "nowhere")]) == 2
    with pytest.raises(SystemExit, match="not a date-time"):
        cli.main(["--cache", str(tmp_path), "--since", "yesterday"])
