"""Table 3 is a short declaration over the experiments runner (soundctm/experiments/tables/table3.py), the one
the registry gives all.py and reproduce/table3.py; the paper tier names every missing asset in one message."""

from pathlib import Path

import soundctm.experiments.tables.table3 as t3
from soundctm.experiments import Table, cli, get_table


def test_table3_is_a_declaration_that_all_py_runs_unchanged():
    assert isinstance(t3.TABLE, Table)
    assert len(Path(t3.__file__).read_text().splitlines()) <= 60
    assert get_table("3") is t3.TABLE and get_table("table3") is t3.TABLE
    names = [r.name for r in t3.TABLE.rows]
    assert {"teacher", "student-1", "student-16", "zeros", "vae-recon"} <= set(names)
    # every quality claim has a subject the self-test replaces by the decoded-zeros row
    assert all(c.subject for c in t3.TABLE.claims if c.kind != "faster")


def test_paper_tier_lists_every_missing_asset_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOUNDCTM_CACHE", str(tmp_path / "cache"))
    for var in ("SOUNDCTM_WEIGHTS", "SOUNDCTM_AUDIOCAPS", "SOUNDCTM_OPENL3_WEIGHTS", "SOUNDCTM_PASST_WEIGHTS",
                "SOUNDCTM_CLAP_WEIGHTS", "SOUNDCTM_ROBERTA_TOKENIZER"):
        monkeypatch.delenv(var, raising=False)
    rc = cli(get_table("3"), ["--tier", "paper", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    for what in ("test_5cap.csv", "audio", "soundctm-dit-1b-teacher", "soundctm-dit-1b-student",
                 "gaussian-dac-44k", "openl3", "passt", "630k-audioset-best"):
        assert err.count(what) >= 1, what
    assert not (tmp_path / "out").exists()
