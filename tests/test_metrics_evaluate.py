"""`soundctm evaluate` / evaluate_dirs / evaluate_arrays and the reference-statistics cache."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from soundctm.commands.evaluate import main
from soundctm.metrics import functional as Fm
from soundctm.metrics.evaluate import evaluate_arrays, resolve_embedders
from soundctm.metrics.indomain import LogMelEmbedder
from soundctm.metrics.refcache import reference_stats


def _clips(n, seed, sr=16000):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=sr // 2) * rng.uniform(0.05, 0.3)).astype(np.float32) for _ in range(n)]


def _write(d, wavs, names, sr=16000):
    d.mkdir(parents=True, exist_ok=True)
    for w, n in zip(wavs, names):
        sf.write(d / f"{n}.wav", w, sr, subtype="FLOAT")
    return d


def test_reference_stats_cached_by_settings(tmp_path):
    names = [f"id{i:03d}" for i in range(12)]
    ref = _write(tmp_path / "ref", _clips(12, 0), names)
    files = sorted(ref.glob("*.wav"))
    emb = LogMelEmbedder()
    a = reference_stats(
        files, emb, split="unit", cache=tmp_path / "c", work_dir=tmp_path / "w", progress=False
    )
    assert a.path.exists()
    for part in ("unit__logmel-v1__sr16000__clipfull__win1024__hop320__n12__files",):
        assert part in a.path.name
    b = reference_stats(
        files, emb, split="unit", cache=tmp_path / "c", work_dir=tmp_path / "w2", progress=False
    )
    assert b.path == a.path and not (tmp_path / "w2").exists()  # loaded, nothing extracted
    np.testing.assert_allclose(a.sigma, b.sigma)
    c = reference_stats(
        files,
        emb,
        split="unit",
        cache=tmp_path / "c",
        clip_seconds=0.25,
        progress=False,
        work_dir=tmp_path / "w3",
    )
    assert c.path != a.path and "clip0.25" in c.path.name


def test_cli_dirs_vs_arrays_and_json(tmp_path, capsys):
    names = [f"yt{i:03d}" for i in range(16)]
    gen_w, ref_w = _clips(16, 1), _clips(16, 2)
    gen = _write(tmp_path / "gen", gen_w, names)
    ref = _write(tmp_path / "ref", ref_w, names)
    caps = tmp_path / "caps.csv"
    with open(caps, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
        w.writerows([(i, n, 0, f"noise number {i}") for i, n in enumerate(names)])
    out = tmp_path / "res.json"
    rc = main(
        [
            str(gen),
            "--reference",
            str(ref),
            "--metrics",
            "fd",
            "--embedder",
            "fd=logmel",
            "--out",
            str(out),
            "--no-progress",
            "--cache",
            str(tmp_path / "c"),
            "--work-dir",
            str(tmp_path / "w"),
            "--captions",
            str(caps),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "FD[logmel]" in printed
    res = json.loads(out.read_text())
    assert res["provenance"]["embedders"]["logmel"]["version"] == "1" and res["provenance"]["n_gen"] == 16
    arr = evaluate_arrays(gen_w, ref_w, None, 16000, ["fd"], {"fd": "logmel"})
    assert res["FD[logmel]"] == pytest.approx(arr["FD[logmel]"], rel=1e-6)
    # and by hand from the embeddings
    e = LogMelEmbedder()
    direct = Fm.frechet_distance_from_embeddings(
        e.embed(gen_w, 16000)["embeddings"], e.embed(ref_w, 16000)["embeddings"]
    )
    assert res["FD[logmel]"] == pytest.approx(direct, rel=1e-6)


def test_audiocaps_reference_pairs_by_youtube_id_and_errors(tmp_path):
    names = [f"yt{i:03d}" for i in range(6)]
    root = tmp_path / "ac"
    _write(root / "audio", _clips(6, 3), names)
    with open(root / "test.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
        w.writerows([(i, n, 0, "a sound") for i, n in enumerate(names)])
    from soundctm.metrics.evaluate import resolve_reference

    files, caps, label = resolve_reference(root)
    assert [f.stem for f in files] == names and caps["yt003"] == "a sound" and label == "ac-test"
    (root / "audio" / "yt004.wav").unlink()
    from soundctm.paths import MissingAssetsError

    with pytest.raises(MissingAssetsError, match="yt004"):
        resolve_reference(root)
    with pytest.raises(ValueError, match="needs logits"):
        resolve_embedders(["kl"], {"kl": "logmel"})
    with pytest.raises(ValueError, match="unknown metric"):
        resolve_embedders(["fad"], {"fad": "logmel"})
