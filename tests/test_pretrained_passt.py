"""PaSST adapter: both clip protocols (numpy, any env) and the hear21passt model path (metrics env)."""

import numpy as np
import pytest
import torch

from soundctm.metrics.pretrained import passt as P
from soundctm.paths import MissingAssetsError

torch.set_num_threads(1)
SR = P.SAMPLE_RATE


@pytest.mark.parametrize(
    "seconds,count,padded_last",
    [(10.0, 1, False), (10.03, 2, True), (4.0, 1, True), (25.0, 4, False), (23.0, 4, True)],
)
def test_stable_audio_windows(seconds, count, padded_last):
    x = np.random.default_rng(0).standard_normal(int(seconds * SR)) * 0.3
    ws = P.stable_audio_windows(x)
    assert len(ws) == count
    assert all(len(w) == 10 * SR for w in ws)
    peak = max(np.abs(w).max() for w in ws)
    assert np.isclose(peak, 10 ** (-1 / 20), rtol=1e-5)  # peak-normalised to -1 dBFS
    assert (ws[-1][-1] == 0) == padded_last


def test_stable_audio_short_clips():
    # a clip under 1.5 s is passed unpadded (upstream behaviour); 1.5 s to 10 s is padded to 10 s
    assert [len(w) for w in P.stable_audio_windows(np.ones(SR))] == [SR]
    assert [len(w) for w in P.stable_audio_windows(np.ones(2 * SR))] == [10 * SR]
    # 21 s: windows start at 0, 5, 10, 15 s (range(0, max(5 s, N - 5 s), 5 s))
    assert len(P.stable_audio_windows(np.ones(21 * SR))) == 4


def test_audioldm_window():
    x = np.full(5 * SR, 0.25)
    w = P.audioldm_window(x + np.linspace(-0.1, 0.1, 5 * SR))
    assert w.shape == (10 * SR,) and np.all(w[5 * SR :] == 0)
    assert abs(w[: 5 * SR].mean()) < 1e-6  # mean removed before padding
    assert P.audioldm_window(np.ones(12 * SR)).shape == (10 * SR,)


def test_silence_is_left_at_zero():
    assert np.all(P.stable_audio_windows(np.zeros(SR))[0] == 0)


def test_unknown_protocol():
    with pytest.raises(ValueError, match="protocol"):
        P.PasstEmbedder(torch.nn.Identity(), protocol="nope")


def test_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDCTM_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("SOUNDCTM_PASST_WEIGHTS", raising=False)
    with pytest.raises(MissingAssetsError) as ei:
        P.build()
    assert "passt-s-f128-p16-s10-ap.476-swa.pt" in str(ei.value) and "SOUNDCTM_PASST_WEIGHTS" in str(ei.value)


# ------------------------------------------------------------------ hear21passt model (metrics env)
SMALL = dict(embed_dim=48, depth=1, num_heads=2)


@pytest.fixture(scope="module")
def small_model():
    pytest.importorskip("hear21passt")
    torch.manual_seed(0)
    return P.build_passt_model(**SMALL)


def test_model_logits_and_protocols(small_model):
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(44100 * 3) * 0.1, rng.standard_normal((2, 44100 * 12)) * 0.1]
    for protocol in P.PROTOCOLS:
        emb = P.PasstEmbedder(small_model, protocol=protocol)
        out = emb.embed(clips, 44100)
        assert out["logits"].shape == (2, 527) and np.isfinite(out["logits"]).all()
    # stable-audio: the clip's logits are the mean of its windows' logits
    emb = P.PasstEmbedder(small_model, protocol="stable-audio")
    x = emb.embed([clips[1]], 44100)["logits"][0]
    from soundctm.metrics.registry import prepare_waveforms

    x32 = prepare_waveforms([clips[1]], 44100, SR)[0]
    per = emb._logits(P.stable_audio_windows(x32))
    assert per.shape[0] == 2
    np.testing.assert_allclose(x, per.mean(0), rtol=1e-5, atol=1e-5)


def test_local_weights_roundtrip(small_model, tmp_path):
    f = tmp_path / "passt.pt"
    torch.save(small_model.net.state_dict(), f)
    loaded = P.PasstEmbedder.from_weights(f, protocol="audioldm", net_overrides=SMALL)
    x = np.random.default_rng(3).standard_normal(SR * 2) * 0.1
    ref = P.PasstEmbedder(small_model, protocol="audioldm").embed([x], SR)["logits"]
    assert np.array_equal(loaded.embed([x], SR)["logits"], ref)
