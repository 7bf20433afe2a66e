"""LAION-CLAP adapter: audio protocol (any env), tokenizer guard and the laion-clap model path (metrics env)."""

import json

import numpy as np
import pytest
import torch

from soundctm.metrics.pretrained import clap as C
from soundctm.metrics.pretrained.weights import set_offline_env
from soundctm.paths import MissingAssetsError

set_offline_env()  # before anything imports Hugging Face code
torch.set_num_threads(1)
TINY_ROBERTA = dict(num_hidden_layers=1, num_attention_heads=2, hidden_size=768, intermediate_size=64)


def write_byte_level_tokenizer(d):
    """A real (tiny) RoBERTa byte-level BPE vocabulary: the 256 byte symbols, no merges."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for c in cs:
        vocab[chr(c)] = len(vocab)
    vocab["<mask>"] = len(vocab)
    d.mkdir(parents=True, exist_ok=True)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    return d


def test_audio_input_protocol():
    x = np.sin(np.linspace(0, 100, 48000)) * 0.2
    y = C.clap_audio_input(x)
    assert y.shape == (480000,) and y.dtype == np.float32
    assert np.isclose(np.abs(y).max(), np.round(10 ** (-1 / 20) * 32767) / 32767, atol=1 / 32767)
    np.testing.assert_array_equal(y[:48000], y[48000:96000])  # repeated 10 times, nothing left to pad
    assert np.allclose(
        np.round(y.astype(np.float64) * 32767), y.astype(np.float64) * 32767, atol=1e-3
    )  # int16 grid
    z = C.clap_audio_input(np.ones(70000) * 0.5)
    assert np.all(z[6 * 70000 :] == 0) and np.all(z[: 6 * 70000] != 0)  # 6 repeats then zeros
    assert C.clap_audio_input(np.ones(500000), normalise=False).shape == (480000,)


def test_missing_weights_one_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDCTM_WEIGHTS", str(tmp_path))
    for v in ("SOUNDCTM_CLAP_WEIGHTS", "SOUNDCTM_ROBERTA_TOKENIZER"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(MissingAssetsError) as ei:
        C.build()
    msg = str(ei.value)
    for s in (
        "630k-audioset-best.pt",
        "SOUNDCTM_CLAP_WEIGHTS",
        "vocab.json",
        "merges.txt",
        "SOUNDCTM_ROBERTA_TOKENIZER",
    ):
        assert s in msg


# ------------------------------------------------------------------ transformers / laion-clap (metrics env)
def test_tokenizer_guard_rejects_empty_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers")
    empty = transformers.RobertaTokenizer()  # what an offline hub lookup hands back: specials only
    with pytest.raises(C.EmptyTokenizerError, match="a dog barks"):
        C.check_tokenizer(empty)
    tok = C.load_roberta_tokenizer(write_byte_level_tokenizer(tmp_path / "tok"))
    assert int(C.tokenize(tok, ["a dog barks"])["attention_mask"].sum()) == 13
    with pytest.raises(C.EmptyTokenizerError):
        C.ClapEmbedder(torch.nn.Identity(), empty)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    if not C.clap_available():  # never `import laion_clap`: it fetches tokenizers at import time
        pytest.skip("laion-clap is not installed (metrics environment)")
    torch.manual_seed(0)
    model = C.build_clap_model(roberta_overrides=TINY_ROBERTA)
    tok_dir = write_byte_level_tokenizer(tmp_path_factory.mktemp("tok"))
    return model, tok_dir


def test_audio_text_features(small):
    model, tok_dir = small
    emb = C.ClapEmbedder(model, C.load_roberta_tokenizer(tok_dir))
    rng = np.random.default_rng(0)
    out = emb.embed([rng.standard_normal(44100 * 2) * 0.1, rng.standard_normal((2, 44100 * 11)) * 0.1], 44100)
    assert out["embeddings"].shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(out["embeddings"], axis=1), 1.0, rtol=1e-5)
    t = emb.embed_text(["a dog barks", "rain on a roof"])
    assert t.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(t[0], t[1])
    feats = emb.features([rng.standard_normal(48000)], 48000)
    assert [tuple(f.shape) for f in feats] == [(1, 1024, 192), (1, 256, 384), (1, 64, 768), (1, 64, 768)]


def test_local_weights_roundtrip(small, tmp_path):
    model, tok_dir = small
    f = tmp_path / "clap.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}, "epoch": 1}, f)
    loaded = C.ClapEmbedder.from_weights(f, tokenizer_dir=tok_dir, roberta_overrides=TINY_ROBERTA)
    ref = C.ClapEmbedder(model, C.load_roberta_tokenizer(tok_dir))
    x = np.random.default_rng(1).standard_normal(48000) * 0.1
    assert np.array_equal(loaded.embed([x], 48000)["embeddings"], ref.embed([x], 48000)["embeddings"])
    assert np.array_equal(loaded.embed_text(["a dog barks"]), ref.embed_text(["a dog barks"]))
