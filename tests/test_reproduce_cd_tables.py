"""reproduce/table2.py: a short declaration over the runner that all.py loads unchanged, whose rows share the
artifacts of the other 16 kHz tables and whose claims are anchored to the decoded-zeros self-test."""

import importlib.util
from pathlib import Path

from soundctm.experiments import Table

REPRO = Path(__file__).resolve().parent.parent / "reproduce"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"repro_{name}", REPRO / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_table2_declaration():
    t2 = _load("table2").TABLE
    assert isinstance(t2, Table) and _load("all").load_table("2") == t2
    assert len((REPRO / "table2.py").read_text().splitlines()) <= 80
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
    t1 = {r.name: r for r in _load("table1").TABLE.rows}
    assert rows["soundctm-1"].generation_settings() == t1["d_teacher-1"].generation_settings()
    assert rows["teacher"].generation_settings() == t1["teacher"].generation_settings()
    # C2 for both peers, SoundCTM improving with steps; every claim re-checked with decoded zeros as its subject
    ids = {c.id for c in t2.claims}
    assert {f"(C2-{p}-{m})" for p in ("consistencytta", "audiolcm") for m in ("fd", "kl", "clap")} <= ids
    assert {f"(steps-{m})" for m in ("fd", "kl", "clap")} <= ids
    assert all(c.subject in ("soundctm-1", "soundctm-16") and c.subject in (c.a, c.b) for c in t2.claims)
    assert "†" in rows["consistencytta-2"].display and rows["soundctm-1"].paper_dict()["FAD_vgg"] == 2.08
