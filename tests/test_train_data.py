"""Conditioned latent data: conditioning computed once per (clip, paraphrase), real tiny text encoder."""

import pytest
import torch

from soundctm.nn.text import TinyTextEncoder
from soundctm.train.data import ConditionedLatents, build_conditioned, encode_conditioning

CAPTIONS = [["a dog barks", "barking dog"], ["rain falls on a roof", "heavy rain", "rain on a tin roof"]]


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    vocab = sorted({w for caps in CAPTIONS for c in caps for w in c.split()})
    return TinyTextEncoder(vocab).eval()


def test_pooled_mode_is_one_token_and_uncond_is_the_empty_caption(encoder):
    lat = torch.randn(2, 16, 128)
    data = build_conditioned(lat, CAPTIONS, encoder, mode="pooled", cond_len=1)
    assert data.cond.shape == (5, 1, 64) and data.uncond.shape == (1, 1, 64)
    assert data.pair_clip.tolist() == [0, 0, 1, 1, 1] and data.captions[2] == "rain falls on a roof"
    with torch.no_grad():
        _, _, pooled = encoder.encode(["heavy rain", ""])
    torch.testing.assert_close(data.cond[3, 0], pooled[0])
    torch.testing.assert_close(data.uncond[0, 0], pooled[1])
    z0, cond = data.batch(torch.tensor([4, 0]))
    assert torch.equal(z0, lat[[1, 0]]) and torch.equal(cond, data.cond[[4, 0]])


def test_tokens_mode_pads_with_zeros(encoder):
    cond = encode_conditioning(encoder, ["a dog barks"], "tokens", 40)
    assert cond.shape == (1, 40, 64)
    with torch.no_grad():
        tokens, mask, _ = encoder.encode(["a dog barks"])
    n = int(mask.sum())
    torch.testing.assert_close(cond[0, :n], tokens[0, :n])
    assert torch.all(cond[0, n:] == 0)
    assert encode_conditioning(encoder, ["a dog barks"], "tokens", 8).shape == (1, 8, 64)


def test_bad_input_is_refused(encoder):
    with pytest.raises(ValueError, match="one token"):
        encode_conditioning(encoder, ["x"], "pooled", 4)
    with pytest.raises(ValueError, match="unknown conditioning mode"):
        encode_conditioning(encoder, ["x"], "mean", 1)
    with pytest.raises(ValueError, match="caption lists"):
        build_conditioned(torch.randn(3, 4, 8), CAPTIONS, encoder, mode="pooled", cond_len=1)
    with pytest.raises(ValueError, match="not in latents"):
        ConditionedLatents(
            torch.randn(1, 4, 8),
            torch.randn(2, 1, 3),
            torch.tensor([0, 1]),
            ["a", "b"],
            torch.randn(1, 1, 3),
            {},
        )
