"""AudioCaps-format loader: broken files, format conversions, CSV errors, and the synthetic corpus."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from soundctm.data.audiocaps import AudioCapsDataset, captions_by_clip
from soundctm.data.corpus import build_corpus, load_ground_truth

SR = 16000
N = 4000


def _write_csv(path, rows, columns=("audiocap_id", "youtube_id", "start_time", "caption")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(rows)
    return path


def _tone(n, sr, f=440.0, amp=0.5):
    return (amp * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


@pytest.fixture
def broken(tmp_path):
    """Folder with one file per failure mode, plus good ones; CSV with 2 captions for one good clip."""
    d = tmp_path / "audio"
    d.mkdir()
    sf.write(d / "good.wav", _tone(N, SR), SR, subtype="PCM_16")
    sf.write(d / "good2.wav", _tone(N, SR, 880.0), SR, subtype="PCM_16")
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x01garbage-not-a-wave-file" * 10)
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "noframes.wav", np.zeros((0,), np.float32), SR)
    nan = _tone(N, SR)
    nan[100] = np.nan
    sf.write(d / "nan.wav", nan, SR, subtype="FLOAT")
    rows = [
        (1, "good", 0, "a tone"),
        (2, "good", 0, "a sine tone"),
        (3, "good2", 0, "a higher tone"),
        (4, "absent", 0, "nothing"),
        (5, "corrupt", 0, "broken"),
        (6, "empty", 0, "empty"),
        (7, "noframes", 0, "no frames"),
        (8, "nan", 30, "nan"),
    ]
    return _write_csv(tmp_path / "test.csv", rows), d


def test_bad_files_excluded_with_one_summary(broken, capsys):
    csv_path, d = broken
    ds = AudioCapsDataset(csv_path, d, sample_rate=SR, clip_samples=N)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "AudioCaps test.csv: 8 rows, 3 usable, 1 missing, 1 unreadable, 2 zero-length, 1 non-finite"
    ]
    assert ds.report.counts == {"missing": 1, "unreadable": 1, "zero-length": 2, "non-finite": 1}
    assert len(ds) == 3 and ds.clip_ids == ["good", "good2"]
    items = [ds[i] for i in range(len(ds))]
    assert [it["caption"] for it in items] == ["a tone", "a sine tone", "a higher tone"]
    assert [it["index"] for it in items] == [0, 1, 2]
    assert items[0]["audiocap_id"] == "1" and items[2]["youtube_id"] == "good2"
    for it in items:
        assert it["audio"].dtype == torch.float32 and it["audio"].shape == (1, N)
        assert torch.isfinite(it["audio"]).all()
    np.testing.assert_allclose(items[0]["audio"][0].numpy(), _tone(N, SR), atol=1 / 32767 + 1e-6)


def test_strict_lists_bad_files(broken):
    csv_path, d = broken
    with pytest.raises(ValueError) as e:
        AudioCapsDataset(csv_path, d, sample_rate=SR, clip_samples=N, strict=True, verbose=False)
    msg = str(e.value)
    for name in ("absent", "corrupt.wav", "empty.wav", "noframes.wav", "nan.wav"):
        assert name in msg
    assert "good.wav" not in msg


def test_header_scan_zeroes_nan_with_one_warning(broken):
    csv_path, d = broken
    ds = AudioCapsDataset(csv_path, d, sample_rate=SR, clip_samples=N, scan="header", verbose=False)
    assert "nan" in ds.clip_ids  # a header scan cannot see NaN samples
    i = [r.youtube_id for r in ds.rows].index("nan")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        a = ds[i]["audio"]
        ds[i]
    assert torch.isfinite(a).all() and a[0, 100] == 0.0
    assert len([x for x in w if "non-finite" in str(x.message)]) == 1


def test_stereo_downmixed_and_warned_once(tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    rows = []
    for k in range(3):
        left, right = _tone(N, SR, 300.0 + 100 * k, 0.6), _tone(N, SR, 1000.0, 0.2)
        sf.write(d / f"st{k}.wav", np.stack([left, right], 1), SR, subtype="FLOAT")
        rows.append((k, f"st{k}", 0, f"stereo {k}"))
    csv_path = _write_csv(tmp_path / "train.csv", rows)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = AudioCapsDataset(csv_path, d, sample_rate=SR, clip_samples=N, verbose=False)
        items = [ds[i] for i in range(len(ds))]
    assert len([x for x in w if "downmixed" in str(x.message)]) == 1
    assert "3 multi-channel" in str([x for x in w if "downmixed" in str(x.message)][0].message)
    expect = 0.5 * (_tone(N, SR, 300.0, 0.6) + _tone(N, SR, 1000.0, 0.2))
    np.testing.assert_allclose(items[0]["audio"][0].numpy(), expect, atol=1e-6)


def test_wrong_rate_resampled_once(tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    src = 22050
    for k in range(2):
        sf.write(d / f"r{k}.wav", _tone(src, src, 1000.0), src, subtype="FLOAT")  # 1 s at 22.05 kHz
    csv_path = _write_csv(tmp_path / "val.csv", [(1, "r0", 0, "x"), (2, "r1", 0, "y")])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = AudioCapsDataset(csv_path, d, sample_rate=SR, clip_samples=20000, verbose=False)
        a = ds[0]["audio"][0].numpy()
        ds[1]
    assert len([x for x in w if "resampled with soxr" in str(x.message)]) == 1
    assert a.shape == (20000,)
    # 1 s of audio -> 16000 samples, then zero padding up to 20000
    assert np.abs(a[16200:]).max() == 0.0 and np.abs(a[1000:15000]).max() > 0.45
    spec = np.abs(np.fft.rfft(a[:16000]))
    assert abs(np.argmax(spec) * SR / 16000 - 1000.0) <= 1.0


def test_crop_from_start_and_name_patterns(tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    long = np.linspace(-0.5, 0.5, 3 * N).astype(np.float32)
    sf.write(d / "Yabc.wav", long, SR, subtype="FLOAT")
    sf.write(d / "def_30.flac", _tone(N, SR), SR)
    sf.write(d / "ghi_12.000.wav", _tone(N, SR), SR)
    sf.write(d / "77.wav", _tone(N, SR), SR)
    sf.write(d / "jkl.ogg", _tone(N, SR), SR)
    csv_path = _write_csv(
        tmp_path / "t.csv",
        [
            (1, "abc", 0, "a"),
            (2, "def", 30, "b"),
            (3, "ghi", 12, "c"),
            (77, "zzz", 0, "d"),
            (5, "jkl", 0, "e"),
        ],
    )
    ds = AudioCapsDataset(csv_path, d, sample_rate=SR, clip_samples=N, verbose=False)
    assert len(ds) == 5
    np.testing.assert_allclose(ds[0]["audio"][0].numpy(), long[:N], atol=1e-7)
    assert ds.audio_path("def").name == "def_30.flac"
    assert ds.audio_path("ghi").name == "ghi_12.000.wav"
    assert ds.audio_path("zzz").name == "77.wav"
    assert ds[4]["audio"].shape == (1, N)


def test_unique_clips_and_captions_by_clip(broken):
    csv_path, d = broken
    ds = AudioCapsDataset(csv_path, d, sample_rate=SR, clip_samples=N, unique_clips=True, verbose=False)
    assert len(ds) == 2 and [ds[i]["caption"] for i in range(2)] == ["a tone", "a higher tone"]
    assert ds.captions_by_clip() == {"good": ["a tone", "a sine tone"], "good2": ["a higher tone"]}
    assert captions_by_clip(csv_path)["good"] == ["a tone", "a sine tone"]


def test_csv_missing_column(tmp_path, broken):
    _, d = broken
    bad = _write_csv(
        tmp_path / "bad.csv", [(1, "good", "a tone")], columns=("audiocap_id", "youtube_id", "caption")
    )
    with pytest.raises(ValueError, match=r"bad\.csv: missing column\(s\) \['start_time'\]"):
        AudioCapsDataset(bad, d, sample_rate=SR, clip_samples=N)


def test_all_bad_csv(tmp_path, broken):
    _, d = broken
    allbad = _write_csv(tmp_path / "allbad.csv", [(1, "absent", 0, "x"), (2, "corrupt", 0, "y")])
    with pytest.raises(ValueError, match=r"allbad\.csv: 2 rows, 0 usable.*no usable rows"):
        AudioCapsDataset(allbad, d, sample_rate=SR, clip_samples=N, verbose=False)


def test_bad_arguments(broken):
    csv_path, d = broken
    for sr in (0, -16000):
        with pytest.raises(ValueError, match="sample_rate must be a positive"):
            AudioCapsDataset(csv_path, d, sample_rate=sr, clip_samples=N)
    with pytest.raises(ValueError, match="clip_samples"):
        AudioCapsDataset(csv_path, d, sample_rate=SR, clip_samples=0)
    with pytest.raises(FileNotFoundError, match="AudioCaps CSV not found"):
        AudioCapsDataset(d / "nope.csv", d, sample_rate=SR, clip_samples=N)
    with pytest.raises(FileNotFoundError, match="audio folder not found"):
        AudioCapsDataset(csv_path, d / "nope", sample_rate=SR, clip_samples=N)


def test_synthetic_corpus_through_loader(tmp_path):
    info = build_corpus(tmp_path / "c", seed=0, n_train=6, n_test=3, progress=False)
    train = info.dataset("train", verbose=False)
    assert len(train) == 30 and len(train.clip_ids) == 6 and train.report.usable == 30
    gt = load_ground_truth(info.root)
    item = train[7]
    assert item["audio"].shape == (1, 32768)
    assert item["caption"] in gt.clip(item["youtube_id"])["captions"]
    assert train.captions_by_clip()[item["youtube_id"]] == gt.clip(item["youtube_id"])["captions"]
    x, _ = sf.read(info.audio_dir / f"{item['youtube_id']}.wav", dtype="float32")
    np.testing.assert_array_equal(item["audio"][0].numpy(), x)
    test = info.dataset("test", verbose=False)
    assert len(test) == 3 and len(info.dataset("test_5cap", verbose=False)) == 15
    # the same files read at 44.1 kHz through the loader's resampler
    with pytest.warns(UserWarning, match="3 file.* resampled with soxr"):
        t44 = AudioCapsDataset(
            info.csv_path("test"), info.audio_dir, sample_rate=44100, clip_samples=90316, verbose=False
        )
    assert t44[0]["audio"].shape == (1, 90316)
