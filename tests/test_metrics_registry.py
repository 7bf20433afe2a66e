"""Embedder interface, registry and input robustness (silence, short clips, NaN/Inf, sample rate, stereo)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from soundctm.metrics import functional as Fm
from soundctm.metrics.extract import compute_chunk
from soundctm.metrics.registry import (
    Embedder,
    NonFiniteAudioError,
    available_embedders,
    get_embedder,
    prepare_waveforms,
    register,
)


def _tone(sr, seconds, f=440.0, amp=0.3):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_registry_names_and_errors():
    names = available_embedders()
    for n in ("vggish", "passt", "laion-clap", "openl3", "tiny-evt", "tiny-clap", "logmel"):
        assert n in names
    with pytest.raises(KeyError, match="unknown embedder"):
        get_embedder("no-such-embedder")
    emb = get_embedder("logmel")
    assert isinstance(emb, Embedder) and emb.name == "logmel" and emb.version == "1"
    with pytest.raises(ValueError, match="already registered"):
        register("logmel", lambda: None)


def test_missing_pretrained_module_gives_clear_error(monkeypatch):
    import soundctm.metrics.registry as reg

    monkeypatch.setitem(reg._LAZY, "no-such-embedder", "soundctm.metrics.pretrained.no_such_module")
    with pytest.raises(ModuleNotFoundError, match="soundctm.metrics.pretrained.no_such_module"):
        get_embedder("no-such-embedder")


def test_prepare_resamples_downmixes_and_pads():
    sr = 8000
    mono = _tone(sr, 0.5)
    stereo_cn = np.stack([mono, -mono * 0.5])  # [C, N]
    stereo_nc = stereo_cn.T.copy()  # [N, C] (soundfile layout)
    out = prepare_waveforms([mono, stereo_cn, stereo_nc, mono[:10]], sr, 16000, min_samples=2000)
    assert [len(x) for x in out] == [8000, 8000, 8000, 2000]
    assert all(x.dtype == np.float32 for x in out)
    np.testing.assert_allclose(out[1], out[2], atol=1e-7)
    np.testing.assert_allclose(out[1], 0.25 * out[0], atol=1e-6)  # mean of (x, -x/2)
    # resampling keeps the tone's frequency: peak of the spectrum at 440 Hz
    spec = np.abs(np.fft.rfft(out[0]))
    assert abs(np.argmax(spec) * 16000 / len(out[0]) - 440) < 3
    # batched tensor input and integer PCM
    t = torch.zeros(3, 100)
    assert len(prepare_waveforms(t, 16000, 16000)) == 3
    pcm = (mono * 32767).astype(np.int16)
    np.testing.assert_allclose(prepare_waveforms([pcm], sr, sr)[0], mono, atol=1e-4)


def test_nan_and_inf_raise_naming_the_file(tmp_path):
    x = _tone(16000, 0.2)
    x[5] = np.nan
    with pytest.raises(NonFiniteAudioError, match="bad_clip.wav"):
        prepare_waveforms([_tone(16000, 0.2), x], 16000, 16000, names=["ok.wav", "bad_clip.wav"])
    y = _tone(16000, 0.2)
    y[7] = np.inf
    with pytest.raises(NonFiniteAudioError, match="clip #0"):
        get_embedder("logmel").embed([y], 16000)
    # the same from a file on disk (float WAV can hold NaN)
    p = tmp_path / "nan_file.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match="nan_file.wav"):
        compute_chunk(get_embedder("logmel"), [str(p)])


def test_silent_short_stereo_and_wrong_rate_through_an_embedder():
    emb = get_embedder("logmel")
    silent = np.zeros(16000, np.float32)
    short = _tone(16000, 0.01)  # 160 samples < window 1024
    stereo = np.stack([_tone(44100, 0.5), _tone(44100, 0.5)])
    out = emb.embed([silent, short], 16000)
    assert np.isfinite(out["embeddings"]).all()
    assert out["frames"].tolist()[1] >= 1 and out["frames"].sum() == len(out["embeddings"])
    # 44.1 kHz stereo == 16 kHz mono of the same tone, up to resampling error
    a = emb.embed([stereo], 44100)["embeddings"]
    b = emb.embed([_tone(16000, 0.5)], 16000)["embeddings"]
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 0.05 * np.abs(b).mean()
    # metrics on silent sets are finite: FD of identical silent sets, intensity floor, CLAP on zeros
    e = emb.embed([silent, silent, silent], 16000)["embeddings"]
    assert np.isfinite(Fm.frechet_distance_from_embeddings(e, e))
    assert np.isfinite(Fm.intensity_curve(silent, 16000)).all()
    assert Fm.clap_score(np.zeros((2, 8)), np.ones((2, 8))) == 0.0


class _BrokenEmbedder(Embedder):
    name, version = "broken", "0"
    outputs = ("embeddings", "logits")

    def forward(self, waveforms):
        return {"embeddings": np.zeros((len(waveforms), 3)), "frames": np.ones(len(waveforms), int)}


def test_embedder_output_contract_is_checked():
    with pytest.raises(RuntimeError, match="logits"):
        _BrokenEmbedder().embed([np.zeros(100)], 16000)
