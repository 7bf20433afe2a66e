"""OpenL3 port: framing, kapre-style mel front end, shapes, local-weights loading."""

import numpy as np
import pytest
import torch

from soundctm.metrics.pretrained import openl3 as O
from soundctm.paths import MissingAssetsError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    n = O.OpenL3Net().eval()
    for m in n.modules():  # non-trivial BN statistics so the roundtrip test covers buffers too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return n


@pytest.mark.parametrize("n,frames", [(1, 1), (24000, 1), (24001, 2), (48000, 2), (48001, 3), (480000, 20)])
def test_frame_count(n, frames):
    f = O.frame_audio(np.ones(n, np.float32))
    assert f.shape == (frames, 48000)
    assert np.all(f[0, :24000] == 0) and f[0, 24000] == 1  # 0.5 s of zeros before the first sample


def test_frames_hop_half_second():
    x = np.arange(100000, dtype=np.float32)
    f = O.frame_audio(x)
    np.testing.assert_array_equal(f[1, :24000], f[0, 24000:])
    np.testing.assert_array_equal(f[1, 24000:], x[24000:48000])


def test_mel_matrix_area_normalised():
    m = O.kapre_mel_matrix()
    assert m.shape == (256, 1025)
    mel = np.linspace(0, 2595 * np.log10(1 + 24000 / 700), 258)
    hz = 700 * (10 ** (mel / 2595) - 1)
    peak = 2.0 / (hz[2:] - hz[:-2])  # triangle height after area normalisation
    assert np.all(m.max(axis=1) <= peak + 1e-12)
    wide = (hz[2:] - hz[:-2]) > 200  # bands spanning several FFT bins reach close to their peak
    assert np.all(m.max(axis=1)[wide] > 0.5 * peak[wide])


def test_front_end_decibels(net):
    x = torch.from_numpy(O.frame_audio(np.random.default_rng(0).standard_normal(48000).astype(np.float32)))
    s = net.speclayer(x)
    assert s.shape == (2, 1, 256, 199)
    assert torch.allclose(s.amax(dim=(1, 2, 3)), torch.zeros(2))  # per-frame max is 0 dB
    assert s.min() >= -80.0
    assert torch.allclose(net.speclayer(3.0 * x), s, atol=1e-4)  # level-invariant after max subtraction


def test_embedder_shapes_resampling_channels(net):
    emb = O.OpenL3Embedder(net)
    rng = np.random.default_rng(0)
    out = emb.embed([rng.standard_normal(44100) * 0.1, rng.standard_normal((44100 * 2, 2)) * 0.1], 44100)
    assert out["frames"].tolist() == [2, 4]
    assert out["embeddings"].shape == (6, 512)
    assert np.isfinite(out["embeddings"]).all()


def test_local_weights_roundtrip(net, tmp_path, monkeypatch):
    f = tmp_path / "openl3_mel256_env_512.pth"
    torch.save(net.state_dict(), f)
    monkeypatch.setenv("SOUNDCTM_OPENL3_WEIGHTS", str(f))
    from soundctm.metrics.registry import get_embedder

    loaded = get_embedder("openl3")
    x = np.random.default_rng(2).standard_normal(30000) * 0.1
    assert np.array_equal(
        loaded.embed([x], 48000)["embeddings"], O.OpenL3Embedder(net).embed([x], 48000)["embeddings"]
    )


def test_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDCTM_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("SOUNDCTM_OPENL3_WEIGHTS", raising=False)
    with pytest.raises(MissingAssetsError, match="SOUNDCTM_OPENL3_WEIGHTS"):
        O.build()
