"""Pretrained caption encoders for the paper tier, loading LOCAL weights only.

- `LaionClapText` ("laion-clap"): the SoundCTM-DiT condition, ONE L2-normalised 512-d LAION-CLAP
  (630k-audioset-best) text embedding per caption: tokens [B, 1, 512], mask [B, 1], pooled [B, 512].
- `FlanT5Text` ("flan-t5-large"): the SoundCTM-UNet / TANGO condition, FLAN-T5-Large encoder
  hidden states [B, L, 1024] with their padding mask; pooled = masked mean of the tokens [B, 1024].

Both need the metrics environment's packages (laion-clap / transformers) and user-supplied files
(`soundctm.metrics.pretrained.weights.WEIGHTS`); a missing file stops with one message naming it.
Importing this module registers both names with `soundctm.nn.text.get_text_encoder`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from soundctm.metrics.pretrained import clap
from soundctm.metrics.pretrained.weights import require_weights, set_offline_env
from soundctm.nn.text import TextEncoder, register_text_encoder

__all__ = ["LaionClapText", "FlanT5Text"]


def _check_captions(captions: Sequence[str]) -> list[str]:
    if isinstance(captions, str):
        raise TypeError("captions must be a sequence of strings, not one string")
    caps = list(captions)
    if not all(isinstance(c, str) for c in caps):
        raise TypeError("every caption must be a string")
    return caps


class LaionClapText(TextEncoder):
    """LAION-CLAP text tower: encode(captions) -> (tokens [B, 1, 512], mask [B, 1] bool, pooled [B, 512]).

    Built from local weights (`SOUNDCTM_CLAP_WEIGHTS`, `SOUNDCTM_ROBERTA_TOKENIZER`) unless an existing
    CLAP `model` and `tokenizer` are passed. The tokenizer is verified before use (see
    `soundctm.metrics.pretrained.clap.check_tokenizer`).
    """

    name = "laion-clap"
    dim = 512
    pooled_dim = 512
    max_len = 1

    def __init__(
        self,
        weights=None,
        tokenizer_dir=None,
        model: nn.Module | None = None,
        tokenizer=None,
        device: str | torch.device = "cpu",
    ):
        super().__init__()
        if model is None or tokenizer is None:
            emb = clap.ClapEmbedder.from_weights(weights, tokenizer_dir=tokenizer_dir, device="cpu")
            model, tokenizer = emb.model, emb.tokenizer
        clap.check_tokenizer(tokenizer)
        self.clap = model.eval()
        self._tokenizer = tokenizer
        self._tokenize = clap.tokenize
        self.to(device)

    def encode(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        caps = _check_captions(captions)
        data = self._tokenize(self._tokenizer, caps)
        pooled = self.clap.get_text_embedding(
            {k: v.to(self.device) for k, v in data.items()}
        )  # L2-normalised
        mask = torch.ones(len(caps), 1, dtype=torch.bool, device=pooled.device)
        return pooled[:, None, :], mask, pooled


class FlanT5Text(TextEncoder):
    """FLAN-T5 encoder: encode(captions) -> (tokens [B, L, 1024], mask [B, L] bool, pooled [B, 1024]).

    directory: a local Hugging Face model directory (config.json, weights, tokenizer files); default
      `SOUNDCTM_FLAN_T5_DIR` or `weights_dir()/flan-t5-large`. Loaded with `local_files_only=True`.
    max_len: captions are padded / truncated to this many tokens (L). Padded positions are masked;
      their features are the encoder's outputs at pad tokens and must be ignored via the mask.
    pooled: mean of the valid tokens (T5 has no pooled output).
    """

    name = "flan-t5-large"

    def __init__(self, directory=None, max_len: int = 128, device: str | torch.device = "cpu"):
        super().__init__()
        set_offline_env()
        if directory is None:
            directory = require_weights("flan-t5-large")["flan-t5-large"]
        from transformers import AutoTokenizer, T5EncoderModel  # optional heavy package (metrics extra)

        self.encoder = T5EncoderModel.from_pretrained(str(directory), local_files_only=True).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        self.dim = self.pooled_dim = int(self.encoder.config.d_model)
        self.max_len = int(max_len)
        if self.max_len < 2:
            raise ValueError(f"max_len must be >= 2, got {max_len}")
        probe = self.tokenizer(["a dog barks"], add_special_tokens=True)["input_ids"][0]
        if len(probe) <= 1:
            raise RuntimeError(f"the FLAN-T5 tokenizer in {directory} is empty: 'a dog barks' gave {probe}")
        self.to(device)

    def encode(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        caps = _check_captions(captions)
        enc = self.tokenizer(
            caps, padding="max_length", truncation=True, max_length=self.max_len, return_tensors="pt"
        )
        ids = enc["input_ids"].to(self.device)
        mask = enc["attention_mask"].to(self.device).bool()
        tokens = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        m = mask[..., None].to(tokens.dtype)
        pooled = (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)
        return tokens, mask, pooled


register_text_encoder("laion-clap", LaionClapText)
register_text_encoder("flan-t5-large", FlanT5Text)
