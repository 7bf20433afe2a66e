"""reproduce/table3.py: the paper tier's one missing-assets message, and the claims logic."""

import importlib.util
from pathlib import Path

import pytest

from soundctm.paths import MissingAssetsError

SCRIPT = Path(__file__).resolve().parent.parent / "reproduce" / "table3.py"


def _load():
    spec = importlib.util.spec_from_file_location("table3_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paper_tier_lists_every_missing_asset_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDCTM_CACHE", str(tmp_path / "cache"))
    for var in ("SOUNDCTM_WEIGHTS", "SOUNDCTM_AUDIOCAPS", "SOUNDCTM_OPENL3_WEIGHTS", "SOUNDCTM_PASST_WEIGHTS",
                "SOUNDCTM_CLAP_WEIGHTS", "SOUNDCTM_ROBERTA_TOKENIZER"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(MissingAssetsError) as e:
        _load().main(["--tier", "paper", "--out", str(tmp_path / "out")])
    msg = str(e.value)
    for what in ("test_5cap.csv", "audio", "soundctm-dit-1b-teacher", "soundctm-dit-1b-student",
                 "gaussian-dac-44k", "openl3", "passt", "630k-audioset-best"):
        assert what in msg, what
    assert len(e.value.missing) == 9
    assert not (tmp_path / "out").exists()


def test_claims_report_failure_with_margin():
    t3 = _load()
    rows = [{"kind": "teacher", "steps": 40, "seconds": 1.0, "FD": 10.0, "KL": 1.0, "CLAP": 0.3},
            {"kind": "student", "steps": 1, "seconds": 0.05, "FD": 12.0, "KL": 1.2, "CLAP": 0.25},
            {"kind": "student", "steps": 16, "seconds": 0.5, "FD": 20.0, "KL": 1.1, "CLAP": 0.28}]
    c = t3.claims(rows, "FD", "KL", "CLAP")
    assert [x["supported"] for x in c] == [True, False, False]
    assert "20.0x" in c[0]["margin"] and "2.000" in c[2]["margin"]
