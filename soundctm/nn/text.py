"""Text encoders: the common interface and the tiny in-project CLAP.

Every text encoder maps a list of captions to `(tokens [B, L, D], mask [B, L] bool, pooled [B, P])`:
per-token features for cross-attention (TANGO's UNet uses FLAN-T5 tokens), a validity mask, and
one pooled, L2-normalised embedding (SoundCTM-DiT cross-attends to ONE CLAP text token). The
unconditional embedding used for classifier-free guidance is the encoding of the empty caption.

`get_text_encoder(name)` dispatches to:
  - "tiny-clap": `TinyCLAP`, a small contrastive text/audio model trained on the tiny corpus;
  - "laion-clap", "flan-t5-large": adapters in `soundctm.metrics.pretrained.text` (they need
    user-supplied weights; importing that module registers them here).

`Conditioner(text_encoder, cond_shape)` turns captions into a model's conditioning: cond [B, L, D]
and the unconditional embedding `.uncond` [1, L, D] (the empty caption), for teacher, student and apps.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundctm.audio import log_mel, resample
from soundctm.io import load_safetensors, save_safetensors
from soundctm.paths import MissingAssetsError, tiny_components_dir

__all__ = [
    "TextEncoder",
    "WordTokenizer",
    "normalise_caption",
    "build_vocabulary",
    "TinyTextConfig",
    "TinyAudioConfig",
    "TinyTextEncoder",
    "TinyAudioEncoder",
    "TinyCLAP",
    "contrastive_loss",
    "get_text_encoder",
    "register_text_encoder",
    "TEXT_ENCODERS",
    "COND_MODES",
    "cond_mode",
    "encode_conditioning",
    "Conditioner",
]


class TextEncoder(nn.Module):
    """Interface of every caption encoder.

    Attributes: `name`; `dim` (D, token feature size); `pooled_dim` (P, pooled size; equals `dim`
    unless a subclass says otherwise); `max_len` (L, the fixed token length of `encode`).
    """

    name: str = "text-encoder"
    dim: int
    pooled_dim: int
    max_len: int

    def encode(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """captions: B strings -> (tokens [B, L, D], mask [B, L] bool (True = valid), pooled [B, P])."""
        raise NotImplementedError

    def forward(self, captions: Sequence[str]):
        return self.encode(captions)

    def uncond(self, batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The unconditional embedding (empty caption) repeated `batch_size` times."""
        tokens, mask, pooled = self.encode([""])
        return (
            tokens.expand(batch_size, -1, -1),
            mask.expand(batch_size, -1),
            pooled.expand(batch_size, -1),
        )

    def freeze(self) -> TextEncoder:
        """Eval mode, no gradients; returns self."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        return torch.device("cpu")


# ----------------------------------------------------------------------------------------------
# word-level tokenizer over a closed vocabulary

PAD, UNK, CLS = "<pad>", "<unk>", "<cls>"
SPECIALS = (PAD, UNK, CLS)

_APOSTROPHE = re.compile(r"['\u2019]")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def normalise_caption(text: str) -> list[str]:
    """Lower-case, drop apostrophes, turn every other punctuation mark into a space, split.

    "A dog's bark, then RAIN." -> ["a", "dogs", "bark", "then", "rain"].
    """
    if not isinstance(text, str):
        raise TypeError(f"captions must be strings, got {type(text).__name__}")
    t = _APOSTROPHE.sub("", text.lower())
    return [w for w in _NON_WORD.sub(" ", t).split() if w]


def build_vocabulary(captions: Iterable[str], min_count: int = 1) -> list[str]:
    """Sorted list of the words occurring at least `min_count` times (specials not included)."""
    c = Counter(w for cap in captions for w in normalise_caption(cap))
    return sorted(w for w, n in c.items() if n >= min_count)


class WordTokenizer:
    """Closed-vocabulary word tokenizer: ids 0 = <pad>, 1 = <unk>, 2 = <cls>, then the words.

    Every sequence starts with <cls> (so the empty caption is the single token <cls>), unknown
    words map to <unk>, and sequences are truncated / padded to `max_len`.
    """

    def __init__(self, vocabulary: Sequence[str], max_len: int = 32):
        if max_len < 2:
            raise ValueError("max_len must be at least 2 (<cls> + one word)")
        words = [w for w in vocabulary if w not in SPECIALS]
        if len(set(words)) != len(words):
            raise ValueError("vocabulary contains duplicates")
        self.vocabulary = list(words)
        self.itos = list(SPECIALS) + self.vocabulary
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.max_len = int(max_len)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    @property
    def cls_id(self) -> int:
        return 2

    def ids(self, caption: str) -> list[int]:
        """Token ids of one caption, <cls> first, truncated to `max_len` (no padding)."""
        ids = [self.cls_id] + [self.stoi.get(w, self.unk_id) for w in normalise_caption(caption)]
        return ids[: self.max_len]

    def __call__(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """captions: B strings -> (ids [B, max_len] long, mask [B, max_len] bool)."""
        if isinstance(captions, str):
            raise TypeError("pass a list of captions, not a single string")
        b = len(captions)
        ids = torch.zeros(b, self.max_len, dtype=torch.long)
        mask = torch.zeros(b, self.max_len, dtype=torch.bool)
        for i, cap in enumerate(captions):
            seq = self.ids(cap)
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = True
        return ids, mask

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.itos[i] for i in ids if i not in (self.pad_id, self.cls_id))


# ----------------------------------------------------------------------------------------------
# tiny text / audio towers


@dataclass(frozen=True)
class TinyTextConfig:
    """Tiny text tower: `layers` pre-norm transformer layers of width `dim`, pooled `embed_dim`."""

    dim: int = 64
    layers: int = 2
    heads: int = 4
    ff_mult: int = 4
    max_len: int = 32
    embed_dim: int = 64
    dropout: float = 0.0


@dataclass(frozen=True)
class TinyAudioConfig:
    """Tiny audio tower: log-mel front-end + 1-D conv net over time, pooled `embed_dim`."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 64
    channels: int = 128
    embed_dim: int = 64


class TinyTextEncoder(TextEncoder):
    """Word tokenizer + small transformer; tokens [B, L, dim], pooled = L2-normalised proj(<cls>)."""

    name = "tiny-text"

    def __init__(self, vocabulary: Sequence[str], config: TinyTextConfig = TinyTextConfig()):
        super().__init__()
        self.config = config
        self.tokenizer = WordTokenizer(vocabulary, config.max_len)
        self.dim = config.dim
        self.pooled_dim = config.embed_dim
        self.max_len = config.max_len
        self.embed = nn.Embedding(len(self.tokenizer), config.dim)
        self.pos = nn.Parameter(torch.randn(config.max_len, config.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            config.dim,
            config.heads,
            dim_feedforward=config.ff_mult * config.dim,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)
        self.proj = nn.Linear(config.dim, config.embed_dim)
        nn.init.normal_(self.embed.weight, std=0.02)

    @property
    def vocabulary(self) -> list[str]:
        return self.tokenizer.vocabulary

    def forward_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids, mask: [B, L] -> (tokens [B, L, dim] (zero where mask is False), pooled [B, embed_dim])."""
        h = self.embed(ids) + self.pos[: ids.shape[1]]
        h = self.transformer(h, src_key_padding_mask=~mask)
        h = self.norm(h) * mask[..., None]
        pooled = F.normalize(self.proj(h[:, 0]), dim=-1)
        return h, pooled

    def encode(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenizer(captions)
        dev = self.device
        ids, mask = ids.to(dev), mask.to(dev)
        tokens, pooled = self.forward_ids(ids, mask)
        return tokens, mask, pooled


class TinyAudioEncoder(nn.Module):
    """log-mel -> conv net -> mean+max pool over time -> L2-normalised embedding.

    wav: [B, 1, N] at `config.sample_rate` -> [B, embed_dim].
    """

    def __init__(self, config: TinyAudioConfig = TinyAudioConfig()):
        super().__init__()
        self.config = config
        c = config.channels
        self.net = nn.Sequential(
            nn.Conv1d(config.n_mels, c, 5, padding=2),
            nn.GroupNorm(8, c),
            nn.GELU(),
            nn.Conv1d(c, c, 5, stride=2, padding=2),
            nn.GroupNorm(8, c),
            nn.GELU(),
            nn.Conv1d(c, c, 3, stride=2, padding=1),
            nn.GroupNorm(8, c),
            nn.GELU(),
            nn.Conv1d(c, c, 3, padding=1),
        )
        self.proj = nn.Linear(2 * c, config.embed_dim)

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: [B, 1, N] at `config.sample_rate` -> scaled log-mel [B, n_mels, frames]."""
        cfg = self.config
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"expected mono audio [B, 1, N], got {tuple(wav.shape)}")
        if wav.shape[-1] < cfg.n_fft:
            wav = F.pad(wav, (0, cfg.n_fft - wav.shape[-1]))
        m = log_mel(wav.float(), cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.hop)
        return (m + 2.5) / 2.5  # log10 magnitudes in roughly [-5, 2] -> roughly [-1, 2]

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: [B, n_mels, frames] -> [B, embed_dim] (unit norm)."""
        h = self.net(feats)
        h = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)
        return F.normalize(self.proj(h), dim=-1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.forward_features(self.features(wav))


def _resample(wav: torch.Tensor, sr_in: int, sr_out: int) -> torch.Tensor:
    """wav: [B, 1, N] -> [B, 1, N * sr_out / sr_in] (soxr, high quality)."""
    if sr_in == sr_out:
        return wav
    x = wav.detach().to("cpu", torch.float32).numpy()[:, 0].T  # [N, B]
    y = resample(np.ascontiguousarray(x), sr_in, sr_out)
    if y.ndim == 1:
        y = y[:, None]
    return torch.from_numpy(np.ascontiguousarray(y.T))[:, None].to(wav.device, wav.dtype)


def contrastive_loss(
    audio_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP/CLAP). audio_emb, text_emb: [B, E] unit norm; row i pairs with row i."""
    logits = logit_scale.exp().clamp(max=100.0) * audio_emb @ text_emb.t()
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class TinyCLAP(TextEncoder):
    """A small CLAP: `TinyTextEncoder` + `TinyAudioEncoder` + learnable logit scale.

    As a `TextEncoder` it encodes captions with its text tower (the conditioning of the tiny
    tier); `audio_embed` / `text_embed` give the shared 64-d space for in-domain CLAP scores.
    """

    name = "tiny-clap"

    def __init__(
        self,
        vocabulary: Sequence[str],
        text_config: TinyTextConfig = TinyTextConfig(),
        audio_config: TinyAudioConfig = TinyAudioConfig(),
    ):
        super().__init__()
        if text_config.embed_dim != audio_config.embed_dim:
            raise ValueError("text and audio embedding sizes must match")
        self.text = TinyTextEncoder(vocabulary, text_config)
        self.audio = TinyAudioEncoder(audio_config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.dim = self.text.dim
        self.pooled_dim = self.text.pooled_dim
        self.max_len = self.text.max_len

    @property
    def sample_rate(self) -> int:
        return self.audio.config.sample_rate

    @property
    def embed_dim(self) -> int:
        return self.audio.config.embed_dim

    @property
    def vocabulary(self) -> list[str]:
        return self.text.vocabulary

    def encode(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.text.encode(captions)

    def text_embed(self, captions: Sequence[str]) -> torch.Tensor:
        """captions: B strings -> [B, embed_dim] unit norm."""
        return self.text.encode(captions)[2]

    def audio_embed(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """wav: [B, 1, N] (or [B, N]) at `sample_rate` (resampled with soxr if needed) -> [B, embed_dim]."""
        if wav.dim() == 2:
            wav = wav[:, None]
        wav = _resample(wav, int(sample_rate), self.sample_rate)
        return self.audio(wav.to(self.device))

    def score(self, wav: torch.Tensor, sample_rate: int, captions: Sequence[str]) -> torch.Tensor:
        """Cosine similarity of each clip with its caption. wav: [B, 1, N] -> [B]."""
        if len(captions) != wav.shape[0]:
            raise ValueError(f"{wav.shape[0]} clips but {len(captions)} captions")
        return (self.audio_embed(wav, sample_rate) * self.text_embed(captions)).sum(-1)

    def loss(
        self, wav_or_feats: torch.Tensor, captions: Sequence[str], features: bool = False
    ) -> torch.Tensor:
        """Contrastive loss of a paired batch; `features=True` if the input is `audio.features(...)`."""
        a = self.audio.forward_features(wav_or_feats) if features else self.audio(wav_or_feats)
        return contrastive_loss(a, self.text_embed(captions), self.logit_scale)

    # -- persistence ---------------------------------------------------------------------------
    def metadata(self) -> dict:
        return {
            "kind": "TinyCLAP",
            "text_config": asdict(self.text.config),
            "audio_config": asdict(self.audio.config),
            "vocabulary": self.vocabulary,
        }

    def checksum(self) -> str:
        h = hashlib.sha256(repr(self.metadata()).encode())
        for k, v in sorted(self.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str | Path, extra_metadata: dict | None = None) -> Path:
        """Weights to safetensors; configs and vocabulary in the metadata."""
        meta = self.metadata()
        if extra_metadata:
            meta["extra"] = extra_metadata
        return save_safetensors(path, self.state_dict(), meta)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> TinyCLAP:
        tensors, meta = load_safetensors(path)
        if meta.get("kind") != "TinyCLAP":
            raise ValueError(f"{path} is not a TinyCLAP checkpoint (metadata: {sorted(meta)})")
        model = cls(
            meta["vocabulary"],
            TinyTextConfig(**meta["text_config"]),
            TinyAudioConfig(**meta["audio_config"]),
        )
        model.load_state_dict(tensors, strict=True)
        return model.to(map_location).eval()


# ----------------------------------------------------------------------------------------------
# registry


def _load_tiny_clap(path: str | Path | None = None, **kwargs) -> TinyCLAP:
    """The tiny CLAP from `path`, or from the tiny components' cache (`soundctm build-components`)."""
    if path is None:
        path = tiny_components_dir() / "clap.safetensors"
        if not path.exists():
            raise MissingAssetsError([("the tiny CLAP", str(path))],
                                     hint="build it with `soundctm build-components` or pass path=")
    return TinyCLAP.load(path, **kwargs).freeze()


TEXT_ENCODERS: dict[str, Callable[..., TextEncoder]] = {"tiny-clap": _load_tiny_clap}
PRETRAINED_TEXT_ENCODERS = ("laion-clap", "flan-t5-large")  # registered by soundctm.metrics.pretrained.text


def register_text_encoder(name: str, factory: Callable[..., TextEncoder]) -> None:
    """Add a text encoder factory to `get_text_encoder`'s table."""
    TEXT_ENCODERS[name] = factory


def get_text_encoder(name: str, **kwargs) -> TextEncoder:
    """Build a text encoder by name ("tiny-clap", "laion-clap", "flan-t5-large"); kwargs go to its factory.

    "tiny-clap" accepts `path=` (a TinyCLAP safetensors file); without it the cached tiny component
    is loaded (built if absent).
    """
    try:
        factory = TEXT_ENCODERS[name]
    except KeyError:
        hint = (" (import soundctm.metrics.pretrained.text to register it)"
                if name in PRETRAINED_TEXT_ENCODERS else "")
        raise ValueError(f"unknown text encoder {name!r}{hint}; expected one of {sorted(TEXT_ENCODERS)}") from None
    return factory(**kwargs)


# ----------------------------------------------------------------------------------------------
# conditioning: text -> the cond / uncond tensors a model takes

COND_MODES = ("pooled", "tokens")


def cond_mode(cond_shape: Sequence[int]) -> str:
    """ "pooled" (ONE token: the pooled embedding) when the model's cond_shape is [1, D], else "tokens"."""
    return "pooled" if int(cond_shape[0]) == 1 else "tokens"


def encode_conditioning(
    text_encoder, captions: Sequence[str], mode: str, cond_len: int, batch_size: int = 256
) -> torch.Tensor:
    """Captions -> conditioning [B, cond_len, D] under no_grad.

    mode "pooled": pooled embedding [B, D] as one token (cond_len must be 1); "tokens": encoder tokens
    with masked positions zeroed, padded with zeros / truncated to cond_len.
    """
    if mode not in COND_MODES:
        raise ValueError(f"unknown conditioning mode {mode!r}; expected one of {COND_MODES}")
    if mode == "pooled" and cond_len != 1:
        raise ValueError(f"pooled conditioning is one token, but the preset asks for {cond_len}")
    out = []
    caps = list(captions)
    with torch.no_grad():
        for i in range(0, len(caps), batch_size):
            tokens, mask, pooled = text_encoder.encode(caps[i : i + batch_size])
            if mode == "pooled":
                out.append(pooled[:, None, :].float().cpu())
                continue
            tok = (tokens * mask[..., None].to(tokens.dtype)).float().cpu()
            if tok.shape[1] >= cond_len:
                tok = tok[:, :cond_len]
            else:
                tok = torch.cat([tok, tok.new_zeros(tok.shape[0], cond_len - tok.shape[1], tok.shape[2])], 1)
            out.append(tok)
    return torch.cat(out)


class Conditioner:
    """Captions -> a model's conditioning. `cond_shape` = the model's (L, D) (`model.cond_shape`).

    `cond(captions)` -> [B, L, D]; `cond.uncond` -> [1, L, D], the empty caption's encoding (the
    classifier-free-guidance branch), computed once. Used by the teacher, the student and the apps.
    """

    def __init__(self, text_encoder, cond_shape: Sequence[int], *, batch_size: int = 256):
        self.text_encoder = text_encoder
        self.cond_shape = (int(cond_shape[0]), int(cond_shape[1]))
        self.mode = cond_mode(self.cond_shape)
        self.batch_size = int(batch_size)
        self._uncond: torch.Tensor | None = None

    @classmethod
    def for_model(cls, text_encoder, model, **kw) -> Conditioner:
        """The conditioner of a teacher / student / preset (anything with `cond_shape`)."""
        return cls(text_encoder, model.cond_shape, **kw)

    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        if isinstance(captions, str):
            raise TypeError("captions must be a sequence of strings, not one string")
        return encode_conditioning(self.text_encoder, captions, self.mode, self.cond_shape[0], self.batch_size)

    @property
    def uncond(self) -> torch.Tensor:
        if self._uncond is None:
            self._uncond = self([""])
        return self._uncond
