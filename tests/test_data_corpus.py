"""Procedural captioned corpus: determinism, classes, captions, ground truth, sample rates, build safety."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundctm.data import corpus as corpus_mod
from soundctm.data.captions import CLASS_WORDS, words
from soundctm.data.corpus import (
    CSV_COLUMNS,
    EVENT_CLASSES,
    build_corpus,
    caption_vocabulary,
    envelope_hop,
    frame_rms_db,
    load_ground_truth,
    make_clip_spec,
    read_manifest,
    synthesize_clip,
    tiny_corpus,
)

SR = 16000
N = 32768
SMALL = dict(seed=0, sample_rate=SR, clip_samples=N, n_train=24, n_val=3, n_test=6, progress=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("c0") / "corpus", **SMALL)


@pytest.fixture(scope="module")
def specs():
    return [make_clip_spec(0, "train", i, N / SR) for i in range(400)]


def _file_bytes(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "corpus.json":
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def test_same_seed_bit_identical(small, tmp_path):
    again = build_corpus(tmp_path / "again", **SMALL)
    assert again.checksum == small.checksum
    a, b = _file_bytes(small.root), _file_bytes(again.root)
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]


def test_other_seed_differs(small, tmp_path):
    other = build_corpus(tmp_path / "s1", **{**SMALL, "seed": 1})
    assert other.checksum != small.checksum
    x0, _ = sf.read(small.audio_dir / "s0tr000000.wav", dtype="int16")
    x1, _ = sf.read(other.audio_dir / "s1tr000000.wav", dtype="int16")
    assert not np.array_equal(x0, x1)
    assert (small.root / "train.csv").read_text() != (other.root / "train.csv").read_text()


def test_growing_n_train_keeps_earlier_clips(small, tmp_path):
    fewer = build_corpus(tmp_path / "fewer", **{**SMALL, "n_train": 10, "n_val": 0})
    for i in range(10):
        name = f"s0tr{i:06d}.wav"
        assert (fewer.audio_dir / name).read_bytes() == (small.audio_dir / name).read_bytes()
    for i in range(SMALL["n_test"]):  # test clips don't depend on n_train / n_val either
        name = f"s0te{i:06d}.wav"
        assert (fewer.audio_dir / name).read_bytes() == (small.audio_dir / name).read_bytes()
    assert make_clip_spec(0, "train", 3, 2.048) == make_clip_spec(0, "train", 3, 2.048)


def test_classes_present_and_distinct(specs):
    assert len(EVENT_CLASSES) >= 12 and len(set(EVENT_CLASSES)) == len(EVENT_CLASSES)
    seen = {ev.cls for s in specs for ev in s.events}
    assert seen == set(EVENT_CLASSES)
    n_events = [len(s.events) for s in specs]
    assert min(n_events) == 1 and max(n_events) == 3
    assert {s.layout for s in specs} == {"single", "sequence", "overlap", "sequence3", "sequence_background"}


def test_captions_state_events_and_relations(specs):
    vocab = set(caption_vocabulary())
    for s in specs:
        assert len(s.captions) >= 5 and len(set(s.captions)) == len(s.captions)
        for c in s.captions:
            low = c.lower()
            assert set(words(c)) <= vocab, (c, set(words(c)) - vocab)
            for ev in s.events:
                assert any(k in low for k in CLASS_WORDS[ev.cls]["keywords"]), (ev.cls, c)
                if ev.count:
                    assert {1: "once", 2: "twice", 3: "three times"}[ev.count] in low, c
                if ev.loudness == "loud":
                    assert "loud" in low, c
                else:
                    assert any(w in low for w in ("quiet", "soft", "faint")), c
                if ev.pitch is not None:
                    assert ev.pitch in low or ("deep" in low and ev.pitch == "low"), c
            if s.layout in ("sequence", "sequence3"):
                assert "then" in low or "after" in low, c
            if s.layout == "overlap":
                assert any(w in words(c) for w in ("while", "as", "background", "over")), c


def test_single_event_captions_state_pitch_and_rate(specs):
    for s in specs:
        if s.layout != "single":
            continue
        ev = s.events[0]
        for c in s.captions:
            w = set(words(c))
            if ev.pitch == "high":
                assert "high" in w, c
            if ev.pitch == "low":
                assert w & {"low", "deep"}, c
            if ev.rate == "fast":
                assert w & {"quickly", "rapidly", "fast", "hurriedly", "heavy", "intense", "intensely"}, c
            if ev.rate == "slow":
                assert w & {"slowly", "slow", "light", "gentle", "sparsely"}, c


def test_csv_layout(small):
    for name, per_clip, n_clips in (
        ("train.csv", 5, 24),
        ("val.csv", 1, 3),
        ("test.csv", 1, 6),
        ("test_5cap.csv", 5, 6),
    ):
        with open(small.root / name, newline="") as f:
            rows = list(csv.reader(f))
        assert tuple(rows[0]) == CSV_COLUMNS
        body = rows[1:]
        assert len(body) == per_clip * n_clips
        ids = [r[1] for r in body]
        assert len(set(ids)) == n_clips
        assert all(ids.count(i) == per_clip for i in set(ids))
        assert all((small.audio_dir / f"{i}.wav").exists() for i in ids)
    all_ids = []
    for name in ("train.csv", "val.csv", "test.csv"):
        with open(small.root / name, newline="") as f:
            all_ids += [r["audiocap_id"] for r in csv.DictReader(f)]
    assert len(set(all_ids)) == len(all_ids)


def test_ground_truth_consistent_with_audio(small):
    gt = load_ground_truth(small.root)
    n = SMALL["n_train"] + SMALL["n_val"] + SMALL["n_test"]
    hop = envelope_hop(SR)
    assert hop == 256 and gt.envelope_hop == hop
    assert gt.labels.shape == (n, len(EVENT_CLASSES)) and gt.envelopes.shape == (n, N // hop)
    assert gt.classes == EVENT_CLASSES
    dur = N / SR
    for i, yid in enumerate(gt.youtube_ids):
        evs = gt.events[i]
        assert 1 <= len(evs) <= 3
        assert set(np.flatnonzero(gt.labels[i])) == {e["class_index"] for e in evs}
        assert all(EVENT_CLASSES[e["class_index"]] == e["class"] for e in evs)
        for e in evs:
            assert 0.0 <= e["onset"] < e["offset"] <= dur + 1e-9
        x, sr = sf.read(small.audio_dir / f"{yid}.wav", dtype="int16")
        assert sr == SR and x.shape == (N,)
        xf = x.astype(np.float64) / 32767.0
        assert np.abs(xf).max() <= 0.9 + 1e-4
        np.testing.assert_allclose(gt.envelopes[i], frame_rms_db(xf, hop), atol=1e-4)
        active = np.zeros(N // hop, bool)
        for e in evs:
            a, b = int(e["onset"] * SR) // hop, int(np.ceil(e["offset"] * SR / hop))
            active[a:b] = True
            assert gt.envelopes[i][a:b].max() > -40.0, (yid, e)  # every event is audible
        assert np.all(gt.envelopes[i][~active] == corpus_mod.ENVELOPE_FLOOR_DB)  # silence outside events
        assert gt.clip(yid)["captions"] == gt.captions[i]
    assert gt.splits.count("test") == SMALL["n_test"]


def test_loudness_words_match_levels(specs):
    loud, quiet = [], []
    for s in specs[:200]:
        if s.layout != "single":
            continue
        ev = s.events[0]
        x = synthesize_clip(s, SR, N).astype(np.float64)
        seg = x[int(ev.onset * SR) : int(ev.offset * SR)]
        (loud if ev.loudness == "loud" else quiet).append(10 * np.log10(np.mean(seg**2)))
    assert len(loud) > 5 and len(quiet) > 5
    assert np.mean(loud) - np.mean(quiet) > 6.0


@pytest.mark.parametrize("sr", [16000, 44100])
def test_sample_rates(sr):
    spec = make_clip_spec(0, "train", 7, 2.048)
    n = int(round(2.048 * sr))
    x = synthesize_clip(spec, sr, n)
    assert x.dtype == np.float32 and x.shape == (n,)
    assert np.isfinite(x).all() and 0.05 < np.abs(x).max() <= 0.9 + 1e-6


def test_44k_corpus_same_descriptions(small, tmp_path):
    n44 = int(round(N * 44100 / SR))
    info = build_corpus(
        tmp_path / "c44", seed=0, sample_rate=44100, clip_samples=n44, n_train=3, n_test=2, progress=False
    )
    assert info.envelope_hop == envelope_hop(44100) == 706
    for yid in ("s0tr000000", "s0tr000002", "s0te000001"):
        x, sr = sf.read(info.audio_dir / f"{yid}.wav")
        assert sr == 44100 and x.shape == (n44,)
    gt44, gt16 = load_ground_truth(info.root), load_ground_truth(small.root)
    for yid in gt44.youtube_ids:
        assert gt44.clip(yid)["events"] == gt16.clip(yid)["events"]
        assert gt44.clip(yid)["captions"] == gt16.clip(yid)["captions"]
    assert gt44.envelopes.shape[1] == n44 // 706


def test_reuse_mismatch_and_overwrite(small, tmp_path):
    root = tmp_path / "c"
    settings = {**SMALL, "n_train": 4, "n_val": 0, "n_test": 2}
    info = build_corpus(root, **settings)
    wav = root / "audio" / "s0tr000000.wav"
    mtime = wav.stat().st_mtime_ns
    again = build_corpus(root, **settings)
    assert again == info and wav.stat().st_mtime_ns == mtime  # reused, nothing rewritten
    with pytest.raises(FileExistsError, match="other settings"):
        build_corpus(root, **{**settings, "seed": 3})
    rebuilt = build_corpus(root, **{**settings, "seed": 3, "n_train": 2}, overwrite=True)
    assert rebuilt.seed == 3 and sorted(p.name for p in (root / "audio").iterdir()) == [
        "s3te000000.wav",
        "s3te000001.wav",
        "s3tr000000.wav",
        "s3tr000001.wav",
    ]


def test_crash_leaves_no_manifest_and_rebuilds(tmp_path, monkeypatch):
    root = tmp_path / "crash"
    real = corpus_mod.synthesize_clip
    calls = {"n": 0}

    def failing(spec, sample_rate, clip_samples):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated crash")
        return real(spec, sample_rate, clip_samples)

    settings = {**SMALL, "n_train": 6, "n_val": 0, "n_test": 2}
    monkeypatch.setattr(corpus_mod, "synthesize_clip", failing)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(root, **settings)
    assert read_manifest(root) is None and not (root / "corpus.json").exists()
    monkeypatch.setattr(corpus_mod, "synthesize_clip", real)
    info = build_corpus(root, **settings)
    assert read_manifest(root)["checksum"] == info.checksum
    assert len(list((root / "audio").glob("*.wav"))) == 8


def test_refuses_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a corpus"):
        build_corpus(tmp_path, **{**SMALL, "n_train": 1, "n_test": 1})


def test_bad_settings():
    with pytest.raises(ValueError, match="sample_rate"):
        build_corpus("/nonexistent/x", sample_rate=0)
    with pytest.raises(ValueError, match="empty"):
        build_corpus("/nonexistent/x", n_train=0, n_test=0, n_val=0)


def test_tiny_corpus_location(tmp_path, monkeypatch):
    monkeypatch.setattr(
        corpus_mod, "TINY_CORPUS", {**corpus_mod.TINY_CORPUS, "n_train": 2, "n_val": 0, "n_test": 1}
    )
    info = tiny_corpus(tmp_path, progress=False)
    assert info.root == tmp_path / "corpus" / "tiny-16k-seed0"
    assert (info.sample_rate, info.clip_samples, info.seed) == (16000, 32768, 0)
    monkeypatch.setenv("SOUNDCTM_CACHE", str(tmp_path / "envcache"))
    assert tiny_corpus(progress=False).root == tmp_path / "envcache" / "corpus" / "tiny-16k-seed0"


@pytest.mark.slow
def test_tiny_corpus_full_build_time(tmp_path):
    import time

    t0 = time.process_time()
    info = tiny_corpus(tmp_path, progress=False)
    cpu = time.process_time() - t0
    assert (info.n_train, info.n_test) == (1200, 120)
    assert cpu < 60.0, f"tiny corpus took {cpu:.1f} s of CPU"


def _build_small(root: str, out: str) -> None:  # (module level: a spawned process imports it)
    info = build_corpus(root, n_train=6, n_val=0, n_test=2, progress=False)
    Path(out).write_text(info.corpus_id)


def test_concurrent_builders_wait_for_each_other_and_share_one_corpus(tmp_path):
    # two Ray workers on one machine may both find the corpus missing; the second must wait, then reuse it
    from processes import run_concurrently

    root = tmp_path / "corpus"
    assert run_concurrently(_build_small, [(str(root), str(tmp_path / f"id{i}")) for i in range(2)], 120) == [0, 0]
    ids = {(tmp_path / f"id{i}").read_text() for i in range(2)}
    assert ids == {build_corpus(root, n_train=6, n_val=0, n_test=2, progress=False).corpus_id}
    assert not (root / ".building").exists()


def test_file_lock_excludes_a_second_holder(tmp_path):
    import threading
    import time

    from soundctm.io import file_lock

    order, held = [], threading.Event()

    def first():
        with file_lock(tmp_path / "x.lock"):
            held.set()
            time.sleep(0.3)
            order.append("first released")

    t = threading.Thread(target=first)
    t.start()
    held.wait(5)
    with file_lock(tmp_path / "x.lock"):
        order.append("second acquired")
    t.join()
    assert order == ["first released", "second acquired"]
