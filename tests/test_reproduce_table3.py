"""reproduce/: Table 3 is a short declaration over the experiments runner; all.py runs the same
declaration; the paper tier names every missing asset in one message."""

from scripts import REPRO, load_script

from soundctm.experiments import Table, cli


def test_table3_is_a_declaration_that_all_py_runs_unchanged():
    t3 = load_script("table3")
    assert isinstance(t3.TABLE, Table)
    assert len((REPRO / "table3.py").read_text().splitlines()) <= 60
    assert load_script("all").load_table("3") == t3.TABLE
    names = [r.name for r in t3.TABLE.rows]
    assert {"teacher", "student-1", "student-16", "zeros", "vae-recon"} <= set(names)
    # every quality claim has a subject the self-test replaces by the decoded-zeros row
    assert all(c.subject for c in t3.TABLE.claims if c.kind != "faster")


def test_paper_tier_lists_every_missing_asset_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOUNDCTM_CACHE", str(tmp_path / "cache"))
    for var in ("SOUNDCTM_WEIGHTS", "SOUNDCTM_AUDIOCAPS", "SOUNDCTM_OPENL3_WEIGHTS", "SOUNDCTM_PASST_WEIGHTS",
                "SOUNDCTM_CLAP_WEIGHTS", "SOUNDCTM_ROBERTA_TOKENIZER"):
        monkeypatch.delenv(var, raising=False)
    rc = cli(load_script("table3").TABLE, ["--tier", "paper", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    for what in ("test_5cap.csv", "audio", "soundctm-dit-1b-teacher", "soundctm-dit-1b-student",
                 "gaussian-dac-44k", "openl3", "passt", "630k-audioset-best"):
        assert err.count(what) >= 1, what
    assert not (tmp_path / "out").exists()
