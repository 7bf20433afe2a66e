"""Table 2 (soundctm/experiments/tables/table2.py): a short declaration over the runner, whose rows share the
artifacts of the other 16 kHz tables and whose claims are anchored to the decoded-zeros self-test; Table 8's."""

from pathlib import Path

import pytest

import soundctm.experiments.tables.table2 as table2
from soundctm.experiments import Table, get_table


def test_table2_declaration():
    t2 = get_table("2")
    assert isinstance(t2, Table) and t2 is table2.TABLE
    assert len(Path(table2.__file__).read_text().splitlines()) <= 80
    rows = {r.name: r for r in t2.rows}
    assert {"teacher", "zeros", "vae-recon"} <= set(rows)
    for peer, objective in (("consistencytta", "cd"), ("audiolcm", "lcm")):
        for n in (1, 2, 4, 16):
            r = rows[f"{peer}-{n}"]
            assert r.sampler == "cm" and r.steps == n and dict(r.run.options) == {"objective": objective}
            assert r.run.teacher == rows["teacher"].run and r.run.seeds == rows["soundctm-1"].run.seeds
    # the paper's omega, nu per SoundCTM row; the 1-step row is Table 1's d_teacher row (one shared artifact)
    assert [(rows[f"soundctm-{n}"].omega, rows[f"soundctm-{n}"].nu) for n in (1, 2, 4, 8, 16)] == [
        (3.5, 1.0), (3.5, 1.0), (3.5, 1.0), (3.0, 1.5), (3.0, 2.0)]
    t1 = {r.name: r for r in get_table("1").rows}
    assert rows["soundctm-1"].generation_settings() == t1["d_teacher-1"].generation_settings()
    assert rows["teacher"].generation_settings() == t1["teacher"].generation_settings()
    # C2 for both peers, SoundCTM improving with steps; every claim re-checked with decoded zeros as its subject
    ids = {c.id for c in t2.claims}
    assert {f"(C2-{p}-{m})" for p in ("consistencytta", "audiolcm") for m in ("fd", "kl", "clap")} <= ids
    assert {f"(steps-{m})" for m in ("fd", "kl", "clap")} <= ids
    assert all(c.subject in ("soundctm-1", "soundctm-16") and c.subject in (c.a, c.b) for c in t2.claims)
    assert "†" in rows["consistencytta-2"].display and rows["soundctm-1"].paper_dict()["FAD_vgg"] == 2.08


def test_table8_declaration_and_the_paper_architectures():
    """Table 8 loads through the registry; its paper-tier stand-ins have the peers' published sizes."""
    from soundctm.experiments.speed import SpeedTable, paper_pipeline

    t8 = get_table("8")
    assert isinstance(t8, SpeedTable) and t8.steps == (1, 2, 4, 8)
    assert {s.name: (s.sampler, dict(s.run.options).get("objective", "ctm")) for s in t8.systems} == {
        "soundctm": ("ctm", "ctm"), "audiolcm": ("cm", "lcm"), "consistencytta": ("cm", "cd")}
    # the paper-size architectures have their published sizes (built on the meta device: nothing allocated)
    cd = paper_pipeline("consistencytta", "meta")
    unet = sum(p.numel() for p in cd.model.net.parameters())
    assert abs(unet / 557e6 - 1) < 0.01, unet  # ConsistencyTTA's 557 M UNet
    assert abs(cd.params["text"] / 341e6 - 1) < 0.02  # the FLAN-T5-Large encoder


@pytest.mark.slow  # about 10 s alone, 30 s on a busy 2-core CPU
def test_table8_runs_end_to_end_at_the_small_size(tmp_path, one_thread):
    """`run_speed` times every system x steps x {skipped, evaluated} with the device named and the claims decided."""
    import dataclasses
    import json
    from argparse import Namespace

    from soundctm.experiments.runner import Runner
    from soundctm.experiments.speed import run_speed
    from soundctm.experiments.tier import PAPER

    small = dataclasses.replace(get_table("8"), small=True, warmup=1)
    runner = Runner(PAPER, tmp_path / "cache", workers=1, log=lambda *a: None)
    rec = run_speed(small, Namespace(out=str(tmp_path / "out"), seed=0), runner, repeats=1, log=lambda *a: None)
    assert len(rec["rows"]) == 6 and {r["uncond_at_nu_1"] for r in rec["rows"]} == {"skipped", "evaluated"}
    assert all(sorted(map(int, r["median"])) == [1, 2, 4, 8] and min(r["median"].values()) > 0 for r in rec["rows"])
    on_disk = json.loads((tmp_path / "out" / "table8.json").read_text())
    assert on_disk["meta"]["device"] and on_disk["meta"]["tier"] == "paper" and len(on_disk["verdicts"]) == 2
    md = (tmp_path / "out" / "table8.md").read_text()
    assert "∅ at ν = 1" in md and "SoundCTM-DiT-1B" in md and "0.141" in md
    # a CSV like every table's: one line per system x branch, the medians and the paper's seconds
    import csv

    with open(tmp_path / "out" / "table8.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert [(c["system"], c["uncond_at_nu_1"]) for c in lines] == [(r["system"], r["uncond_at_nu_1"])
                                                                   for r in rec["rows"]]
    for c, r in zip(lines, rec["rows"]):
        assert [float(c[f"{n} step(s) [s]"]) for n in (1, 2, 4, 8)] == [r["median"][n] for n in (1, 2, 4, 8)]
        assert int(c["params backbone"]) == r["params"]["backbone"] and int(c["repeats"]) == 1
    assert [c["paper 1 [s]"] for c in lines[:2]] == ["0.141", ""]  # the paper's seconds on the skipped row only


def test_the_committed_table8_csv_is_its_json():
    """results/tiny/table8.csv holds the medians of the committed table8.json's repeats, row for row."""
    import csv
    import json
    import statistics

    from scripts import ROOT

    rec = json.loads((ROOT / "results" / "tiny" / "table8.json").read_text())
    with open(ROOT / "results" / "tiny" / "table8.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == len(rec["rows"]) == 6
    for c, r in zip(lines, rec["rows"]):
        assert (c["model"], c["uncond_at_nu_1"]) == (r["label"], r["uncond_at_nu_1"])
        for n in rec["steps"]:
            assert float(c[f"{n} step(s) [s]"]) == statistics.median(r["seconds"][str(n)])
