"""In-domain tiny evaluators: training, caching, and the done-when check of the evaluation layer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundctm.metrics.evaluate import evaluate_dirs
from soundctm.metrics.indomain import EvaluatorError, EvtConfig, TinyClapEmbedder, corpus_checksum, tiny_evt

# A small corpus and its evaluator are built once per machine (both are cached by content).
TEST_CACHE = Path(os.environ.get("SOUNDCTM_TEST_CACHE", "/tmp/soundctm-test-metrics"))
SMALL = dict(seed=0, n_train=240, n_val=40, n_test=60)
CFG = EvtConfig(epochs=16)


def small_corpus():
    from soundctm.data.corpus import build_corpus

    return build_corpus(TEST_CACHE / "corpus-small", progress=False, **SMALL)


@pytest.fixture(scope="module")
def corpus():
    return small_corpus()


@pytest.fixture(scope="module")
def evt(corpus):
    torch.set_num_threads(1)
    return tiny_evt(corpus.root, CFG, cache=TEST_CACHE / "evaluators", log=False, build=True)


def test_tiny_evt_is_trained_cached_and_accurate(corpus, evt, tmp_path):
    meta = evt.meta
    assert meta["corpus_checksum"] == corpus_checksum(corpus.root)
    acc = meta["test_accuracy"]
    n_classes = len(meta["classes"])
    # far above chance (mAP of random scores ~ label density ~ 0.15)
    assert acc["mAP"] > 0.6 and acc["micro_f1"] > 0.4, acc
    files = list((TEST_CACHE / "evaluators").glob("tiny-evt-v2-*.safetensors"))
    assert any(corpus_checksum(corpus.root) in f.name and CFG.key() in f.name for f in files)
    t0 = time.perf_counter()
    again = tiny_evt(corpus.root, CFG, cache=TEST_CACHE / "evaluators", log=False)
    assert time.perf_counter() - t0 < 5.0  # loaded, not retrained
    x = np.random.default_rng(0).normal(size=(2, 32768)).astype(np.float32) * 0.1
    a, b = evt.embed(x, 16000), again.embed(x, 16000)
    np.testing.assert_array_equal(a["logits"], b["logits"])
    assert a["logits"].shape == (2, n_classes) and a["embeddings"].shape == (2 * 5, CFG.embed_dim)
    assert evt.settings()["weights"] == again.settings()["weights"] != ""


def test_tiny_evt_trains_from_scratch_into_its_cache(tmp_path, corpus):
    cfg = EvtConfig(epochs=1)
    with pytest.raises(EvaluatorError, match="build-evaluator"):  # nothing is trained implicitly
        tiny_evt(corpus.root, cfg, cache=tmp_path, log=False)
    assert not list(tmp_path.iterdir())
    e = tiny_evt(corpus.root, cfg, cache=tmp_path, log=False, build=True)
    (f,) = tmp_path.glob("*.safetensors")
    assert f.name == f"tiny-evt-v2-{cfg.key()}-{corpus_checksum(corpus.root)}.safetensors"
    assert e.meta["n_train"] == SMALL["n_train"] and e.meta["config"]["epochs"] == 1
    assert e.meta["temperature_fit"]["n_clips"] == SMALL["n_val"] and e.temperature > 0


def _degrade_dirs(corpus, out: Path):
    """Write the test split, low-passed at falling cutoffs and with rising noise, named by youtube_id."""
    from scipy.signal import butter, sosfiltfilt

    from soundctm.metrics.indomain import read_split

    ids = [r["youtube_id"] for r in read_split(corpus.root, "test")]
    clean = {i: sf.read(corpus.root / "audio" / f"{i}.wav", dtype="float64")[0] for i in ids}
    rng = np.random.default_rng(0)
    variants = {}
    for fc in (4000, 2000, 1000, 400):
        sos = butter(6, fc, fs=16000, output="sos")
        variants[f"lp{fc}"] = {i: sosfiltfilt(sos, x) for i, x in clean.items()}
    for snr in (30, 20, 10, 0):
        noisy = {}
        for i, x in clean.items():
            p = max(np.mean(x**2), 1e-8)
            noisy[i] = x + rng.normal(size=len(x)) * np.sqrt(p / 10 ** (snr / 10))
        variants[f"snr{snr}"] = noisy
    for name, clips in variants.items():
        d = out / name
        d.mkdir(parents=True)
        for i, x in clips.items():
            sf.write(d / f"{i}.wav", np.clip(x, -1, 1).astype(np.float32), 16000, subtype="FLOAT")
    return variants


@pytest.mark.slow
def test_done_when_self_is_zero_and_distances_grow_with_degradation(corpus, evt, tmp_path):
    emb = {"fd": evt, "kl": evt, "kl_audioldm": evt, "is": evt}
    metrics = list(emb)
    kw = dict(cache=tmp_path / "refstats", work_dir=tmp_path / "work", progress=False, is_splits=5)
    # the test split against itself (reference given as the AudioCaps-layout corpus root)
    same = evaluate_dirs(corpus.root / "audio", corpus.root, metrics, emb, **kw)
    # (the audio dir holds train clips too; FD over all of them vs the test split is not 0, so
    # compare the test clips alone:)
    test_dir = tmp_path / "test_only"
    test_dir.mkdir()
    from soundctm.metrics.indomain import read_split

    for r in read_split(corpus.root, "test"):
        os.symlink(corpus.root / "audio" / f"{r['youtube_id']}.wav", test_dir / f"{r['youtube_id']}.wav")
    self_res = evaluate_dirs(test_dir, corpus.root, metrics, emb, **kw)
    assert abs(self_res["FD[tiny-evt]"]) < 1e-6
    assert abs(self_res["KL[tiny-evt]"]) < 1e-4 and abs(self_res["KL_audioldm[tiny-evt]"]) < 1e-4
    assert same["provenance"]["details"]["KL[tiny-evt]"]["paired"] == SMALL["n_test"]
    assert self_res["provenance"]["embedders"]["tiny-evt"]["version"] == "2"

    _degrade_dirs(corpus, tmp_path / "deg")
    res = {
        name: evaluate_dirs(tmp_path / "deg" / name, corpus.root, metrics, emb, **kw)
        for name in ("lp4000", "lp2000", "lp1000", "lp400", "snr30", "snr20", "snr10", "snr0")
    }
    for series in (("lp4000", "lp2000", "lp1000", "lp400"), ("snr30", "snr20", "snr10", "snr0")):
        for col in ("FD[tiny-evt]", "KL[tiny-evt]", "KL_audioldm[tiny-evt]"):
            vals = [self_res[col]] + [res[s][col] for s in series]
            assert all(a < b for a, b in zip(vals, vals[1:])), (col, series, vals)
    # the reference statistics were computed once and reused by every run
    assert len(list((tmp_path / "refstats").glob("*.safetensors"))) == 1


def test_tiny_clap_wrapper_scores_matching_captions(corpus):
    from soundctm.data.corpus import load_ground_truth
    from soundctm.metrics.evaluate import evaluate_arrays
    from soundctm.nn.text import TinyCLAP, build_vocabulary

    gt = load_ground_truth(corpus.root)
    caps = [c[0] for c in gt.captions[:8]]
    torch.manual_seed(0)
    clap = TinyCLAP(build_vocabulary(caps))  # untrained: the wiring, not the quality, is under test
    emb = TinyClapEmbedder(clap)
    wavs = [sf.read(corpus.root / "audio" / f"{i}.wav", dtype="float32")[0] for i in gt.youtube_ids[:8]]
    res = evaluate_arrays(wavs, None, caps, 16000, ["clap"], {"clap": emb})
    a = clap.audio_embed(torch.from_numpy(np.stack(wavs)), 16000)
    t = clap.text_embed(caps)
    expected = torch.nn.functional.cosine_similarity(a, t).mean().item()
    assert res["CLAP[tiny-clap]"] == pytest.approx(expected, abs=1e-5)
    assert np.isfinite(emb.embed([np.zeros(100, np.float32)], 16000)["embeddings"]).all()
