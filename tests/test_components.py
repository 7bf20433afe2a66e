"""The tiny tier's shipped components: a committed VAE / CLAP is used in place of training only when it
records the key the tier's settings give on this corpus, and the committed files are the ones the
settings describe (a preset change without `python reproduce/regression.py --update-reference` fails)."""

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import randomize_

from soundctm.io import load_safetensors
from soundctm.nn.text import TinyCLAP
from soundctm.nn.vae import AudioAutoencoder, vae_config
from soundctm.paths import committed_tiny_dir
from soundctm.train import components as C

COMMITTED = committed_tiny_dir()


def _corpus_root() -> Path:
    return Path(os.environ.get("SOUNDCTM_TEST_CACHE", Path(tempfile.gettempdir()) / "soundctm-test-cache"))


@pytest.fixture(scope="module")
def corpus():
    from soundctm.data.corpus import tiny_corpus

    return tiny_corpus(_corpus_root(), progress=False)


def _vae(seed: int) -> AudioAutoencoder:
    torch.manual_seed(seed)
    return randomize_(AudioAutoencoder(vae_config("tiny")), seed=seed)


def test_a_committed_file_is_adopted_only_under_its_own_key(tmp_path):
    committed, dest = tmp_path / "committed" / "vae.safetensors", tmp_path / "cache" / "vae.safetensors"
    committed.parent.mkdir()
    dest.parent.mkdir()
    _vae(1).save(committed, extra_metadata={"key": "k-right"})
    assert not C.adopt_committed(committed, dest, "k-other") and not dest.exists()
    assert not C.adopt_committed(tmp_path / "absent.safetensors", dest, "k-right") and not dest.exists()
    assert C.adopt_committed(committed, dest, "k-right")
    assert dest.read_bytes() == committed.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["vae.safetensors"]  # no temporary file left
    broken = tmp_path / "committed" / "broken.safetensors"
    broken.write_bytes(committed.read_bytes()[:100])  # truncated: unreadable, never adopted
    assert not C.adopt_committed(broken, tmp_path / "cache" / "other.safetensors", "k-right")


def test_matching_committed_components_are_used_without_training(tmp_path, corpus, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "corpus").symlink_to(_corpus_root() / "corpus")  # the shared test corpus, built once
    vae_key, clap_key = C.component_keys(corpus.corpus_id)
    committed = tmp_path / "committed"
    committed.mkdir()
    vae = _vae(2)
    vae.save(committed / "vae.safetensors", extra_metadata={"key": vae_key, "corpus": corpus.corpus_id})
    torch.manual_seed(3)
    cfg = C.TinyComponentsConfig()
    clap = randomize_(TinyCLAP(["a", "dog", "barks"], cfg.text, cfg.audio), seed=3)
    clap.save(committed / "clap.safetensors", extra_metadata={"key": clap_key, "corpus": corpus.corpus_id})

    def no_training(*a, **k):
        raise AssertionError("trained although matching committed files were given")

    monkeypatch.setattr(C, "train_vae", no_training)
    monkeypatch.setattr(C, "train_clap", no_training)
    lines = []
    _, got_vae, got_clap = C.get_tiny_components(cache, progress=False, log=lines.append, committed=committed)
    assert got_vae.checksum() == vae.checksum() and got_clap.checksum() == clap.checksum()
    assert sum("using the committed" in line for line in lines) == 2
    build = json.loads((C.components_dir(cache) / "build.json").read_text())
    assert build["vae"] == {"key": vae_key, "from": str(committed / "vae.safetensors"), "checksum": vae.checksum()}
    # a committed file made with other settings is not used: training is what would happen
    other = tmp_path / "other"
    other.mkdir()
    vae.save(other / "vae.safetensors", extra_metadata={"key": "another-key"})
    (other / "clap.safetensors").write_bytes((committed / "clap.safetensors").read_bytes())
    cache2 = tmp_path / "cache2"
    cache2.mkdir()
    (cache2 / "corpus").symlink_to(_corpus_root() / "corpus")
    with pytest.raises(AssertionError, match="trained although"):
        C.get_tiny_components(cache2, progress=False, log=lines.append, committed=other)


@pytest.mark.skipif(not (COMMITTED / "vae.safetensors").exists(), reason=f"no committed VAE in {COMMITTED}")
def test_the_committed_vae_and_clap_are_the_ones_the_tier_settings_describe(corpus):
    """A change of the tiny VAE / CLAP settings (or of the corpus) that is not followed by
    `python reproduce/regression.py --update-reference` leaves committed files that no longer describe
    the tier: this fails until they are rebuilt and committed."""
    vae_key, clap_key = C.component_keys(corpus.corpus_id)
    for name, key in (("vae", vae_key), ("clap", clap_key)):
        _, meta = load_safetensors(COMMITTED / f"{name}.safetensors")
        assert meta["extra"]["corpus"] == corpus.corpus_id, name
        assert meta["extra"]["key"] == key, (
            f"soundctm/assets/tiny/{name}.safetensors records key {meta['extra']['key']}, the tier's settings "
            f"give {key}: rebuild and commit it with `python reproduce/regression.py --update-reference`")


def test_components_train_with_one_thread_whatever_the_caller_set(tmp_path, corpus, monkeypatch):
    """A component's key names one set of weights only if it is always trained with the same thread count
    (training is not bit-reproducible across thread counts: tests/test_determinism.py)."""
    import dataclasses

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "corpus").symlink_to(_corpus_root() / "corpus")
    cfg = C.TinyComponentsConfig()
    cfg = dataclasses.replace(cfg, vae_train=dataclasses.replace(cfg.vae_train, steps=2),
                              clap_train=dataclasses.replace(cfg.clap_train, steps=2))
    seen = {}
    for name in ("train_vae", "train_clap"):
        real = getattr(C, name)

        def recording(*a, _real=real, _name=name, **k):
            seen[_name] = torch.get_num_threads()
            return _real(*a, **k)

        monkeypatch.setattr(C, name, recording)
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        C.get_tiny_components(cache, config=cfg, progress=False, log=lambda *a: None, committed=tmp_path / "none")
        assert torch.get_num_threads() == 2  # restored afterwards
    finally:
        torch.set_num_threads(prev)
    assert seen == {"train_vae": C.TRAIN_THREADS, "train_clap": C.TRAIN_THREADS} and C.TRAIN_THREADS == 1
