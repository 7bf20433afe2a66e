"""Text encoders: tokenisation, the empty caption, shapes and masks, pooled norms, persistence,
the registry, and a short contrastive run of the tiny CLAP on a toy paired set."""

from __future__ import annotations

import math

import pytest
import torch

from soundctm.nn.text import (
    TextEncoder,
    TinyAudioConfig,
    TinyCLAP,
    TinyTextConfig,
    TinyTextEncoder,
    WordTokenizer,
    build_vocabulary,
    get_text_encoder,
    normalise_caption,
)
from soundctm.train.text import TextTrainConfig, retrieval_recall, train_clap

CAPTIONS = ["A dog barks loudly.", "Rain falls on a roof", "A high beep, then a low beep!"]
SMALL_TEXT = TinyTextConfig(dim=32, layers=1, heads=4, max_len=12, embed_dim=32)
SMALL_AUDIO = TinyAudioConfig(n_mels=32, channels=32, embed_dim=32)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_normalise_caption():
    assert normalise_caption("A dog's bark, then RAIN.") == ["a", "dogs", "bark", "then", "rain"]
    assert normalise_caption("  ") == []
    with pytest.raises(TypeError):
        normalise_caption(None)


def test_tokenizer_is_deterministic_and_maps_unknown_words():
    vocab = build_vocabulary(CAPTIONS)
    assert vocab == sorted(set(vocab)) and "beep" in vocab and "," not in vocab
    tok = WordTokenizer(vocab, max_len=8)
    ids1, mask1 = tok(["A dog barks", "a DOG barks!", "a zebra barks"])
    ids2, _ = WordTokenizer(list(vocab), max_len=8)(["A dog barks", "a DOG barks!", "a zebra barks"])
    assert torch.equal(ids1, ids2)
    assert torch.equal(ids1[0], ids1[1])  # case and punctuation do not matter
    assert ids1[0, 0] == tok.cls_id
    assert ids1[2, 2] == tok.unk_id and ids1[0, 2] != tok.unk_id
    assert mask1[0].tolist() == [True] * 4 + [False] * 4
    assert (ids1[~mask1] == tok.pad_id).all()
    long_ids, long_mask = tok(["dog " * 20])
    assert long_ids.shape == (1, 8) and long_mask.all()  # truncated to max_len
    assert tok.decode(ids1[2].tolist()) == "a <unk> barks"
    with pytest.raises(TypeError):
        tok("a single string")


def test_encode_shapes_mask_norm_and_empty_caption():
    torch.manual_seed(0)
    enc = TinyTextEncoder(build_vocabulary(CAPTIONS), SMALL_TEXT).eval()
    assert isinstance(enc, TextEncoder)
    with torch.no_grad():
        tokens, mask, pooled = enc.encode(CAPTIONS + [""])
    assert tokens.shape == (4, 12, 32) and mask.shape == (4, 12) and mask.dtype == torch.bool
    assert pooled.shape == (4, 32)
    torch.testing.assert_close(pooled.norm(dim=-1), torch.ones(4))
    assert mask[3].sum() == 1 and mask[3, 0]  # the empty caption is the <cls> token alone
    assert torch.isfinite(tokens).all() and torch.isfinite(pooled).all()
    assert (tokens[~mask] == 0).all()
    # padding does not change a caption's encoding (batch-independent)
    with torch.no_grad():
        alone = enc.encode([CAPTIONS[0]])
    torch.testing.assert_close(alone[2][0], pooled[0], atol=1e-5, rtol=0)
    # unconditional embedding = empty caption, expanded
    with torch.no_grad():
        ut, um, up = enc.uncond(3)
    assert ut.shape == (3, 12, 32) and um.shape == (3, 12)
    torch.testing.assert_close(up[2], pooled[3], atol=1e-5, rtol=0)
    assert not torch.allclose(pooled[3], pooled[0])


def test_clap_save_load_identical(tmp_path):
    torch.manual_seed(0)
    clap = TinyCLAP(build_vocabulary(CAPTIONS), SMALL_TEXT, SMALL_AUDIO).eval()
    path = clap.save(tmp_path / "clap.safetensors")
    loaded = TinyCLAP.load(path)
    assert loaded.vocabulary == clap.vocabulary
    assert loaded.text.config == SMALL_TEXT and loaded.audio.config == SMALL_AUDIO
    wav = 0.1 * torch.randn(2, 1, 8000)
    with torch.no_grad():
        for a, b in zip(clap.encode(CAPTIONS + [""]), loaded.encode(CAPTIONS + [""])):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
        torch.testing.assert_close(
            clap.audio_embed(wav, 16000), loaded.audio_embed(wav, 16000), atol=0, rtol=0
        )
    assert loaded.checksum() == clap.checksum()
    assert get_text_encoder("tiny-clap", path=path).checksum() == clap.checksum()


def test_audio_embed_resamples_and_is_unit_norm():
    torch.manual_seed(0)
    clap = TinyCLAP(["tone"], SMALL_TEXT, SMALL_AUDIO).eval()
    t = torch.arange(16000) / 16000
    x16 = (0.3 * torch.sin(2 * math.pi * 440 * t)).reshape(1, 1, -1)
    t44 = torch.arange(44100) / 44100
    x44 = (0.3 * torch.sin(2 * math.pi * 440 * t44)).reshape(1, 1, -1)
    with torch.no_grad():
        e16 = clap.audio_embed(x16, 16000)
        e44 = clap.audio_embed(x44, 44100)
        e2d = clap.audio_embed(x16[:, 0], 16000)
        other = clap.audio_embed(
            0.3 * torch.randn(1, 1, 16000, generator=torch.Generator().manual_seed(0)), 16000
        )
    assert e16.shape == (1, 32)
    torch.testing.assert_close(e16.norm(dim=-1), torch.ones(1))
    torch.testing.assert_close(e2d, e16)
    # the same tone at another rate lands near the same embedding after resampling (and nearer than noise)
    assert float((e16 * e44).sum()) > 0.95
    assert float((e16 * e44).sum()) > float((e16 * other).sum())


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown text encoder"):
        get_text_encoder("bert")


def _toy_pairs(n_per_class: int, seed: int):
    """Four classes of 0.5 s sounds with two paraphrases each: audio [N, 1, 8000], captions."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(8000) / 16000
    classes = [
        (
            lambda: torch.sin(2 * math.pi * (200 + 20 * torch.rand((), generator=g)) * t),
            ["a low hum", "humming low"],
        ),
        (
            lambda: torch.sin(2 * math.pi * (3000 + 200 * torch.rand((), generator=g)) * t),
            ["a high whistle", "whistling high"],
        ),
        (lambda: torch.randn(8000, generator=g) * 0.5, ["static noise", "a hiss of noise"]),
        (
            lambda: torch.sin(2 * math.pi * 800 * t) * (torch.sin(2 * math.pi * 6 * t) > 0),
            ["beeping tone", "a tone beeps"],
        ),
    ]
    audio, caps = [], []
    for _ in range(n_per_class):
        for make, c in classes:
            audio.append(0.3 * make().float())
            caps.append(c)
    return torch.stack(audio)[:, None], caps


def test_contrastive_training_beats_chance():
    torch.manual_seed(0)
    audio, caps = _toy_pairs(6, seed=0)
    vocab = build_vocabulary(c for cs in caps for c in cs)
    clap = TinyCLAP(vocab, SMALL_TEXT, SMALL_AUDIO)
    # retrieval of the class: with 4 classes, class-level recall@1 by chance is 1/4
    test_audio, test_caps = _toy_pairs(2, seed=1)

    def class_accuracy():
        clap.eval()
        with torch.no_grad():
            a = clap.audio_embed(test_audio, 16000)
            texts = [c[0] for c in test_caps[:4]]
            pred = (a @ clap.text_embed(texts).t()).argmax(dim=1)
        return float((pred == torch.arange(len(test_audio)) % 4).float().mean())

    before = class_accuracy()
    cfg = TextTrainConfig(steps=30, batch_size=8, lr=3e-3, warmup_steps=3, seed=0)
    hist = train_clap(clap, audio, caps, cfg, progress=False, log_every=10)
    after = class_accuracy()
    assert hist["loss"][-1] < hist["loss"][0]
    assert after >= 0.75 and after > before, (before, after)
    rec = retrieval_recall(clap, test_audio, test_caps, ks=(1, 5))
    assert rec["n_clips"] == 8 and rec["n_queries"] == 16 and rec["chance@1"] == 1 / 8
    assert rec["recall@5"] >= rec["recall@1"] > 0
    assert 1 <= rec["mean_rank"] <= 8


def test_train_clap_input_checks():
    clap = TinyCLAP(["x"], SMALL_TEXT, SMALL_AUDIO)
    with pytest.raises(ValueError, match="caption lists"):
        train_clap(clap, torch.zeros(3, 1, 4000), [["x"]] * 2, progress=False)
    with pytest.raises(ValueError, match="at least one caption"):
        train_clap(clap, torch.zeros(2, 1, 4000), [["x"], []], progress=False)
