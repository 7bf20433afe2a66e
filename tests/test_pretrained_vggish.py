"""VGGish port: front end per the AudioSet definition, shapes, windowing, local-weights loading."""

import numpy as np
import pytest
import torch

from soundctm.metrics.pretrained import vggish as V
from soundctm.paths import MissingAssetsError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return V.VGGishNet().eval()


def test_mel_matrix_matches_htk_definition():
    m = V.mel_matrix()
    assert m.shape == (257, 64)
    assert np.all(m[0] == 0)  # DC bin carries no weight
    freqs = np.linspace(0, 8000, 257)
    assert np.all(m[freqs < 125] == 0) and np.all(m[freqs > 7500] == 0)
    edges = np.linspace(1127 * np.log(1 + 125 / 700), 1127 * np.log(1 + 7500 / 700), 66)
    centers_hz = 700 * (np.exp(edges[1:-1] / 1127) - 1)
    # each band peaks at the FFT bin nearest its centre frequency
    assert np.all(np.abs(freqs[np.argmax(m, axis=0)] - centers_hz) <= 8000 / 256)
    assert m.max() <= 1.0


def test_log_mel_of_a_tone_and_of_silence():
    sr = 16000
    t = np.arange(sr) / sr
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    lm = V.log_mel(tone)
    assert lm.shape == (1 + (sr - 400) // 160, 64)
    band = np.argmax(V.mel_matrix()[np.argmin(np.abs(np.linspace(0, 8000, 257) - 1000))])
    assert np.all(np.argmax(lm, axis=1) == band)
    # periodic Hann window + 512-point |rfft|: peak magnitude of a bin-centred tone = A * 400 / 4
    f0 = 1000.0  # bin 32 of 512 at 16 kHz
    frame = 0.5 * np.sin(2 * np.pi * f0 * np.arange(400) / sr) * V._WINDOW
    assert np.isclose(np.abs(np.fft.rfft(frame, 512))[32], 0.5 * 400 / 4, rtol=0.02)
    assert np.allclose(V.log_mel(np.zeros(sr)), np.log(0.01))


@pytest.mark.parametrize(
    "n,expected", [(15599, 0), (15600, 1), (15360 * 2 + 239, 1), (15360 * 2 + 240, 2), (160000, 10)]
)
def test_example_count_drops_tail(n, expected):
    assert V.log_mel_examples(np.zeros(n)).shape == (expected, 96, 64)


def test_embedder_shapes_resampling_channels(net):
    emb = V.VGGishEmbedder(net)
    rng = np.random.default_rng(0)
    clips = [
        rng.standard_normal(16000 * 3).astype(np.float32) * 0.1,  # 3 s mono at 16 kHz
        rng.standard_normal((2, 44100 * 2)) * 0.1,  # stereo [C, N] at 44.1 kHz
        rng.standard_normal(4000) * 0.1,
    ]  # shorter than one example: padded to 15600
    out = emb.embed(clips, 16000)
    assert out["frames"].tolist() == [3, 5, 1]
    assert out["embeddings"].shape == (9, 128)
    out44 = emb.embed([clips[1]], 44100)
    assert out44["frames"].tolist() == [2]
    # no ReLU on the output layer: negative values occur with random weights
    assert (out["embeddings"] < 0).any()
    # a clip's embeddings do not depend on the other clips in the batch
    alone = emb.embed([clips[0]], 16000)["embeddings"]
    np.testing.assert_allclose(alone, out["embeddings"][:3], rtol=1e-5, atol=1e-6)


def test_flatten_order_is_hwc(net):
    x = torch.randn(2, 1, 96, 64)
    h = net.features(x)
    ref = net.embeddings(torch.transpose(torch.transpose(h, 1, 3), 1, 2).contiguous().view(2, -1))
    assert torch.allclose(net(x), ref)


def test_local_weights_roundtrip_and_torchvggish_keys(net, tmp_path, monkeypatch):
    sd = net.state_dict()
    assert {"features.0.weight", "features.13.bias", "embeddings.0.weight", "embeddings.4.bias"} <= set(sd)
    f = tmp_path / "vggish-10086976.pth"
    extra = {"pproc.pca_matrix": torch.zeros(128, 128), "pproc.pca_means": torch.zeros(128, 1)}
    torch.save({**sd, **extra}, f)
    monkeypatch.setenv("SOUNDCTM_VGGISH_WEIGHTS", str(f))
    from soundctm.metrics.registry import get_embedder

    loaded = get_embedder("vggish")
    x = np.random.default_rng(1).standard_normal(16000 * 2) * 0.1
    a = V.VGGishEmbedder(net).embed([x], 16000)["embeddings"]
    b = loaded.embed([x], 16000)["embeddings"]
    assert np.array_equal(a, b)


def test_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDCTM_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("SOUNDCTM_VGGISH_WEIGHTS", raising=False)
    with pytest.raises(MissingAssetsError) as ei:
        V.build()
    assert "vggish-10086976.pth" in str(ei.value) and "SOUNDCTM_VGGISH_WEIGHTS" in str(ei.value)
