"""Latent cache: keys, reuse without re-encoding, atomic builds, checksums."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from soundctm.data.corpus import build_corpus
from soundctm.data.latent_cache import (
    LatentCache,
    build_latent_cache,
    file_checksum,
    find_latent_cache,
    latent_cache_dir,
    latent_cache_key,
    state_dict_checksum,
)

SR, N, HOP, C = 16000, 8192, 256, 6


class FrameProjectionEncoder:
    """A real deterministic encoder: frames of HOP samples -> fixed random projection to C channels.

    audio [B, 1, N] -> latents [B, C, N // HOP]. Counts how often it is called.
    """

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(HOP, C, generator=g) / HOP**0.5
        self.calls = 0
        self.clips = 0

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.clips += audio.shape[0]
        b = audio.shape[0]
        frames = audio.reshape(b, -1, HOP)  # [B, T, HOP]
        return (frames @ self.w).transpose(1, 2).contiguous()  # [B, C, T]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(
        tmp_path_factory.mktemp("lc") / "c",
        seed=0,
        sample_rate=SR,
        clip_samples=N,
        n_train=7,
        n_test=2,
        progress=False,
    )


@pytest.fixture(scope="module")
def train(corpus):
    return corpus.dataset("train", verbose=False)


def _settings(corpus, **kw):
    base = dict(corpus_id=corpus.corpus_id, vae_checksum="vae0", sample_rate=SR, clip_samples=N)
    base.update(kw)
    return base


def test_build_contents(tmp_path, corpus, train):
    enc = FrameProjectionEncoder()
    cache = build_latent_cache(
        train, enc, cache_root=tmp_path, batch_size=3, progress=False, **_settings(corpus)
    )
    assert isinstance(cache, LatentCache) and len(cache) == 7
    assert cache.latents.shape == (7, C, N // HOP) and cache.latents.dtype == torch.float32
    assert enc.calls == 3 and enc.clips == 7  # each clip encoded once, in batches of 3
    assert cache.clip_ids == train.clip_ids
    gt = corpus.ground_truth()
    for i, cid in enumerate(cache.clip_ids):
        assert cache.captions[i] == gt.clip(cid)["captions"] and len(cache.captions[i]) == 5
        direct = FrameProjectionEncoder()(train.load_clip(cid).unsqueeze(0))[0]
        torch.testing.assert_close(cache[i]["latent"], direct, rtol=0, atol=1e-6)
        assert cache[i]["clip_id"] == cid and cache[i]["captions"] == cache.captions[i]
    assert cache.settings == {
        "corpus_id": corpus.corpus_id,
        "vae_checksum": "vae0",
        "sample_rate": SR,
        "clip_samples": N,
    }


def test_reuse_without_reencoding(tmp_path, corpus, train):
    enc = FrameProjectionEncoder()
    first = build_latent_cache(train, enc, cache_root=tmp_path, progress=False, **_settings(corpus))
    calls = enc.calls
    again = build_latent_cache(train, enc, cache_root=tmp_path, progress=False, **_settings(corpus))
    assert enc.calls == calls
    assert again.path == first.path and torch.equal(again.latents, first.latents)
    assert find_latent_cache(tmp_path, **_settings(corpus)).path == first.path
    # a different VAE checksum is a different cache: encoded again
    build_latent_cache(
        train, enc, cache_root=tmp_path, progress=False, **_settings(corpus, vae_checksum="vae1")
    )
    assert enc.calls == 2 * calls


def test_key_changes_with_every_setting(tmp_path, corpus):
    base = _settings(corpus)
    variants = [
        dict(corpus_id=corpus.corpus_id + "x"),
        dict(vae_checksum="vae1"),
        dict(sample_rate=44100),
        dict(clip_samples=N + 1),
    ]
    keys = {latent_cache_key(**base)}
    dirs = {latent_cache_dir(tmp_path, **base)}
    for v in variants:
        keys.add(latent_cache_key(**{**base, **v}))
        dirs.add(latent_cache_dir(tmp_path, **{**base, **v}))
    assert len(keys) == 5 and len(dirs) == 5
    assert latent_cache_key(**base) == latent_cache_key(**dict(reversed(list(base.items()))))


def test_crash_mid_build_leaves_no_cache(tmp_path, corpus, train):
    class CrashingEncoder(FrameProjectionEncoder):
        def __call__(self, audio):
            if self.calls == 1:
                self.calls += 1
                raise RuntimeError("simulated crash during encoding")
            return super().__call__(audio)

    with pytest.raises(RuntimeError, match="simulated crash"):
        build_latent_cache(
            train, CrashingEncoder(), cache_root=tmp_path, batch_size=2, progress=False, **_settings(corpus)
        )
    assert find_latent_cache(tmp_path, **_settings(corpus)) is None
    assert list(tmp_path.iterdir()) == []  # no partial directory, no temp leftovers
    with pytest.raises(FileNotFoundError, match="no complete latent cache"):
        LatentCache(latent_cache_dir(tmp_path, **_settings(corpus)))
    enc = FrameProjectionEncoder()
    cache = build_latent_cache(
        train, enc, cache_root=tmp_path, batch_size=2, progress=False, **_settings(corpus)
    )
    assert enc.clips == 7 and len(cache) == 7


def test_encoder_output_checked(tmp_path, corpus, train):
    with pytest.raises(ValueError, match=r"latents \[B, C, T\]"):
        build_latent_cache(train, lambda a: a[:, 0], cache_root=tmp_path, progress=False, **_settings(corpus))
    with pytest.raises(ValueError, match="clip_samples is 8192"):
        build_latent_cache(
            train,
            FrameProjectionEncoder(),
            cache_root=tmp_path,
            progress=False,
            **_settings(corpus, clip_samples=4096),
        )
    assert list(tmp_path.iterdir()) == []


def test_generic_dataset(tmp_path):
    class Plain(Dataset):
        def __init__(self):
            g = torch.Generator().manual_seed(1)
            self.audio = [torch.randn(1, N, generator=g) * 0.1 for _ in range(3)]
            self.rows = [(0, "a"), (1, "b"), (0, "c"), (2, "d")]

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, i):
            k, cap = self.rows[i]
            return {"audio": self.audio[k], "caption": cap, "youtube_id": f"clip{k}"}

    ds = Plain()
    enc = FrameProjectionEncoder()
    cache = build_latent_cache(
        ds,
        enc,
        cache_root=tmp_path,
        corpus_id="plain",
        vae_checksum="v",
        sample_rate=SR,
        clip_samples=N,
        progress=False,
    )
    assert cache.clip_ids == ["clip0", "clip1", "clip2"]
    assert cache.captions == [["a", "c"], ["b"], ["d"]]
    torch.testing.assert_close(
        cache.latents[2], FrameProjectionEncoder()(ds.audio[2][None])[0], rtol=0, atol=1e-6
    )


def test_checksums(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"weights-1")
    b.write_bytes(b"weights-2")
    assert file_checksum(a) == file_checksum(a) != file_checksum(b)
    assert len(file_checksum(a)) == 16 and int(file_checksum(a), 16) >= 0
    sd = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3), "h": torch.ones(2, dtype=torch.bfloat16)}
    same = {k: sd[k].clone() for k in reversed(list(sd))}
    assert state_dict_checksum(sd) == state_dict_checksum(same)
    changed = dict(same)
    changed["w"] = changed["w"].clone()
    changed["w"][0, 0] += 1e-3
    assert state_dict_checksum(changed) != state_dict_checksum(sd)
    reshaped = dict(same)
    reshaped["w"] = reshaped["w"].reshape(3, 2)
    assert state_dict_checksum(reshaped) != state_dict_checksum(sd)
    np.testing.assert_equal(len(state_dict_checksum(sd, n=8)), 8)
