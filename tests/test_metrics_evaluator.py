"""The committed tiny-evt evaluator: temperature scaling, one file per versioned name (loaded and
hash-verified, never retrained implicitly), and the CLI's one-line error on unreadable audio."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundctm.io import load_safetensors, save_safetensors
from soundctm.metrics import functional as F
from soundctm.metrics.indomain import (
    EvaluatorError,
    EvtConfig,
    _labels_for,
    _load_split_audio,
    _logits,
    committed_evaluators_dir,
    fit_temperature,
    load_evaluator,
    load_labels,
    softmax_nll,
    tiny_evt,
    weights_sha1,
)

COMMITTED = committed_evaluators_dir()
V2 = sorted(COMMITTED.glob(f"tiny-evt-v2-{EvtConfig().key()}-*.safetensors"))
V1 = sorted(COMMITTED.glob("tiny-evt-v1-*.safetensors"))
pytestmark = pytest.mark.skipif(not V2, reason=f"no committed tiny-evt v2 file in {COMMITTED}")


@pytest.fixture(scope="module")
def corpus():
    from soundctm.data.corpus import tiny_corpus

    root = Path(os.environ.get("SOUNDCTM_TEST_CACHE", Path(tempfile.gettempdir()) / "soundctm-test-cache"))
    return tiny_corpus(root, progress=False)


@pytest.fixture(scope="module")
def evt():
    torch.set_num_threads(1)
    return load_evaluator(V2[0])


def test_fit_temperature_recovers_a_known_overconfidence():
    """Labels drawn from softmax(u), logits reported as 4 u: the NLL-optimal temperature is ~4."""
    rng = np.random.default_rng(0)
    u = rng.normal(size=(4000, 6))
    p = F.softmax(u)
    y = np.zeros_like(u)
    y[np.arange(len(u)), [rng.choice(6, p=row) for row in p]] = 1
    fit = fit_temperature(4 * u, y)
    assert fit["temperature"] == pytest.approx(4.0, rel=0.08)
    assert fit["nll"] < fit["nll_t1"] and fit["nll"] == pytest.approx(softmax_nll(4 * u, y, fit["temperature"]))


def test_committed_temperature_lowers_val_nll_and_is_reproducible(corpus, evt):
    meta = evt.meta
    assert meta["version"] == "2" and meta["corpus_checksum"] == corpus.checksum[:12]
    fit_meta = meta["temperature_fit"]
    assert fit_meta["split"] == "val" and fit_meta["val_nll"] < fit_meta["val_nll_t1"]
    _, gt = load_labels(corpus.root)
    ids, wavs = _load_split_audio(Path(corpus.root), "val", 16000)
    z, y = _logits(evt.model, wavs), _labels_for(ids, gt, "val")
    assert softmax_nll(z, y, evt.temperature) < 0.5 * softmax_nll(z, y, 1.0)
    refit = fit_temperature(z, y)  # the stored T is the deterministic fit on these logits
    assert refit["temperature"] == pytest.approx(evt.temperature, rel=1e-4)
    assert refit["nll"] == pytest.approx(fit_meta["val_nll"], rel=1e-5)
    # the embedder's logits are the temperature-scaled ones (what KL / IS take the softmax of)
    out = evt.forward(wavs[:4])
    np.testing.assert_allclose(out["logits"], z[:4] / evt.temperature, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not V1, reason="no committed v1 evaluator to compare with")
def test_kl_no_longer_saturates(corpus, evt):
    """KL(gen || ref) of the test clips against degraded copies: with T = 1 (v1) a heavily degraded set
    sits near the saturated value log(1/eps) and a mildly degraded one is already several nats away;
    with the fitted T (v2) both are far below it, in the same order."""
    from scipy.signal import butter, sosfiltfilt

    ids, ref = _load_split_audio(Path(corpus.root), "test", 16000)
    sos = butter(6, 2000, fs=16000, output="sos")
    rng = np.random.default_rng(0)
    sets = {
        "lp2000": [sosfiltfilt(sos, x).astype(np.float32) for x in ref],
        "snr0": [(x + rng.normal(size=len(x)) * np.sqrt(np.mean(x**2))).astype(np.float32) for x in ref],
    }
    saturated = math.log(1 / F.KL_EPS)
    kl = {}
    for tag, e in (("v1", load_evaluator(V1[0])), ("v2", evt)):
        pr = F.softmax(e.embed(ref, 16000)["logits"])
        for name, wavs in sets.items():
            kl[tag, name] = F.kl_passt_sam(F.softmax(e.embed(wavs, 16000)["logits"]), pr)
    print("KL(gen||ref) of the 120 test clips:", {f"{t}/{n}": round(v, 3) for (t, n), v in kl.items()})
    assert kl["v1", "snr0"] > 0.7 * saturated and kl["v1", "lp2000"] > 2.0, kl
    assert kl["v2", "snr0"] < 0.3 * saturated and kl["v2", "lp2000"] < 1.0, kl
    assert 0 < kl["v2", "lp2000"] < kl["v2", "snr0"]


def test_default_is_the_committed_file_on_a_fresh_cache(tmp_path, monkeypatch):
    from soundctm.metrics.registry import get_embedder

    monkeypatch.setenv("SOUNDCTM_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    e = get_embedder("tiny-evt")
    assert time.perf_counter() - t0 < 10.0  # loaded, not trained (training takes minutes)
    assert e.path == V2[0] and not any(tmp_path.iterdir())  # nothing written into the cache
    tensors, meta = load_safetensors(V2[0])
    assert e.settings()["weights"] == meta["weights_sha1"] == weights_sha1(tensors)
    assert e.settings()["temperature"] == meta["temperature"] and e.version == "2"


def test_evaluate_cli_uses_the_committed_evaluator(tmp_path, monkeypatch, capsys):
    from soundctm.cli import main

    cache = tmp_path / "cache"
    monkeypatch.setenv("SOUNDCTM_CACHE", str(cache))
    rng = np.random.default_rng(0)
    for d, scale in (("gen", 0.1), ("ref", 0.2)):
        (tmp_path / d).mkdir()
        for i in range(6):
            sf.write(tmp_path / d / f"c{i}.wav", rng.normal(size=16000).astype(np.float32) * scale, 16000)
    t0 = time.perf_counter()
    rc = main(["evaluate", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref"), "--embedder-set", "tiny",
               "--metrics", "fd,kid,kl", "--no-progress", "--out", str(tmp_path / "r.json"),
               "--cache", str(tmp_path / "refstats"), "--work-dir", str(tmp_path / "work")])
    assert rc == 0 and time.perf_counter() - t0 < 30.0
    assert not (cache / "tiny" / "evaluators").exists()
    import json

    res = json.loads((tmp_path / "r.json").read_text())
    assert {"FD[tiny-evt]", "KID[tiny-evt]", "KL[tiny-evt]"} <= set(res)
    assert res["provenance"]["embedders"]["tiny-evt"]["weights"] == load_safetensors(V2[0])[1]["weights_sha1"]


def test_evaluate_cli_scores_clap_with_the_committed_clap_generate_uses(tmp_path, monkeypatch):
    """The default metrics' tiny-clap is the committed clap.safetensors (generate's default text encoder),
    found with an empty cache, from a folder outside the checkout."""
    import csv
    import json

    from soundctm import generate
    from soundctm.cli import main
    from soundctm.nn.text import TinyCLAP
    from soundctm.paths import committed_tiny_dir

    clap_file = committed_tiny_dir() / "clap.safetensors"
    assert Path(generate.DEFAULT_TEXT_ENCODER) == clap_file and clap_file.is_file()
    cache = tmp_path / "cache"
    monkeypatch.setenv("SOUNDCTM_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    caps = {f"c{i}": f"a dog barks {i}" for i in range(4)}
    for d in ("gen", "ref"):
        (tmp_path / d).mkdir()
        for stem in caps:
            sf.write(tmp_path / d / f"{stem}.wav", rng.normal(size=16000).astype(np.float32) * 0.1, 16000)
    with open(tmp_path / "caps.csv", "w", newline="") as f:
        csv.writer(f).writerows([("youtube_id", "caption"), *caps.items()])
    rc = main(["evaluate", "gen", "--reference", "ref", "--captions", "caps.csv", "--no-progress",
               "--out", "r.json", "--cache", str(tmp_path / "refstats"), "--work-dir", str(tmp_path / "work")])
    assert rc == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert math.isfinite(res["CLAP[tiny-clap]"]) and math.isfinite(res["FD[tiny-evt]"])
    committed = TinyCLAP.load(clap_file)
    assert res["provenance"]["embedders"]["tiny-clap"]["weights"] == committed.checksum()
    assert not (cache / "tiny" / "components").exists()  # nothing looked for, or built, in the cache


def test_modified_weights_are_refused(tmp_path):
    tensors, meta = load_safetensors(V2[0])
    k = sorted(tensors)[0]
    tensors[k] = tensors[k].clone() + 1e-3
    bad = tmp_path / V2[0].name
    save_safetensors(bad, tensors, meta)
    with pytest.raises(EvaluatorError, match=str(bad).replace(".", r"\.")):
        load_evaluator(bad)
    meta2 = dict(meta, temperature=meta["temperature"] * 2)  # temperature edited, weights kept
    save_safetensors(bad, load_safetensors(V2[0])[0], meta2)
    with pytest.raises(EvaluatorError, match="temperature"):
        load_evaluator(bad)


def test_changed_corpus_is_an_error_not_a_silent_retrain(tmp_path):
    fake = tmp_path / "corpus"
    fake.mkdir()
    (fake / "corpus.json").write_text('{"checksum": "0123456789abcdef"}')
    cache = tmp_path / "evaluators"
    cache.mkdir()
    shutil.copy(V2[0], cache / V2[0].name)
    with pytest.raises(EvaluatorError) as e:
        tiny_evt(corpus_root=fake, cache=cache, log=False)
    msg = str(e.value)
    assert V2[0].name in msg and "0123456789ab" in msg and "soundctm build-evaluator" in msg and "--rebuild" in msg
    assert sorted(p.name for p in cache.iterdir()) == [V2[0].name]  # nothing trained or written
    with pytest.raises(EvaluatorError, match="corpus checksum"):
        load_evaluator(cache / V2[0].name, corpus_root=fake)


def test_unreadable_audio_is_a_one_line_error(tmp_path, capsys):
    from soundctm.cli import main

    gen = tmp_path / "gen"
    gen.mkdir()
    sf.write(gen / "good.wav", np.zeros(16000, np.float32), 16000)
    (gen / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEthis is not audio")
    rc = main(["evaluate", str(gen), "--reference", str(gen), "--metrics", "fd", "--embedder", "fd=logmel",
               "--no-progress", "--cache", str(tmp_path / "rs"), "--work-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip()
    assert rc == 2  # a user error, like every command's
    assert len(err.splitlines()) == 1 and "bad.wav" in err and "Traceback" not in err, err


def test_committed_file_hash_is_recorded():
    """The file docs/metrics.md names: its sha256 is stable (printed by `soundctm build-evaluator`)."""
    digest = hashlib.sha256(V2[0].read_bytes()).hexdigest()
    assert len(digest) == 64
    _, meta = load_safetensors(V2[0])
    assert meta["evaluator_sha1"] and meta["weights_sha1"] and meta["temperature"] > 1.0
