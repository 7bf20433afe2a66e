"""LAION-CLAP (630k-audioset-best: HTSAT-tiny audio encoder, RoBERTa text encoder, no fusion).

Used for the CLAP score (audio-text cosine), CLAP-LPAPS (per-Swin-stage audio features, `features`)
and the SoundCTM-DiT text condition (`soundctm.nn.text_pretrained.LaionClapText`).

The model is the `laion-clap` package's own `clap_module.create_model("HTSAT-tiny", "roberta")`,
with two offline guards:
- `import laion_clap` is never executed: its package `__init__` imports `training/data.py`, which
  fetches three tokenizers from the Hugging Face hub at import time (minutes of retries offline,
  or silently EMPTY tokenizers with HF_HUB_OFFLINE=1). We import the package's `clap_module`
  directly (the path laion_clap itself puts on `sys.path`) with the HF offline variables set.
- the RoBERTa text tower is built from the roberta-base configuration (`ROBERTA_BASE`) instead of
  `RobertaModel.from_pretrained("roberta-base")`; all of its weights come from the CLAP checkpoint.
The tokenizer is built from local `vocab.json` + `merges.txt` (`weights.WEIGHTS["roberta-tokenizer"]`)
and checked before any text is scored (`check_tokenizer`): "a dog barks" must give more than the
2 special tokens, or the run stops.

Audio protocol (stable-audio-metrics `clap_score` with the non-fusion model, METRICS.md): mono
48 kHz, peak-normalised to -1 dBFS, int16 round trip (x.clip(-1, 1) * 32767 -> int16 -> / 32767),
clips shorter than 10 s repeated floor(480000 / N) times then zero-padded to 480000 samples; the
embedding is L2-normalised. Deviation: a clip longer than 10 s is cut to its first 480000 samples
(laion-clap's "rand_trunc" picks a random offset), so scores are deterministic.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from soundctm.metrics.registry import Embedder, prepare_waveforms, register

from .weights import load_into, load_state_dict, require_weights, set_offline_env

__all__ = [
    "ClapEmbedder",
    "build_clap_model",
    "clap_available",
    "load_roberta_tokenizer",
    "check_tokenizer",
    "EmptyTokenizerError",
    "clap_audio_input",
    "ROBERTA_BASE",
    "build",
]

SAMPLE_RATE = 48000
CLIP_SAMPLES = 480000
MAX_TEXT_LEN = 77
EMBED_DIM = 512

# The roberta-base configuration (hub config.json of roberta-base), so the text tower is built offline.
ROBERTA_BASE = dict(
    vocab_size=50265,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=514,
    type_vocab_size=1,
    initializer_range=0.02,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)


class EmptyTokenizerError(RuntimeError):
    """The CLAP tokenizer has no vocabulary (e.g. built offline without its files)."""


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def clap_available() -> bool:
    """True when the `laion-clap` package is installed (checked WITHOUT importing it)."""
    return importlib.util.find_spec("laion_clap") is not None


def _clap_module():
    """Import laion-clap's `clap_module` without running `laion_clap/__init__` (see module doc)."""
    set_offline_env()
    if "clap_module" in sys.modules:
        return sys.modules["clap_module"]
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the LAION-CLAP adapter needs the `laion-clap` package (soundctm's metrics environment, `tox -e metrics`; "
            "see docs/metrics.md)",
            name="laion_clap",
        )
    pkg_dir = str(list(spec.submodule_search_locations)[0])
    if pkg_dir not in sys.path:
        sys.path.append(pkg_dir)  # what laion_clap/__init__ does itself
    with _quiet():
        return importlib.import_module("clap_module")


@contextlib.contextmanager
def _roberta_from_config(overrides: dict | None = None):
    """Make clap_module build its RoBERTa tower from `ROBERTA_BASE` instead of downloading it."""
    cfg = {**ROBERTA_BASE, **(overrides or {})}
    import transformers  # optional pretrained-metric package (the `metrics` extra)

    cm_model = importlib.import_module("clap_module.model")
    original = cm_model.RobertaModel

    class _Offline:
        @staticmethod
        def from_pretrained(name, *a, **kw):
            if name != "roberta-base":
                raise ValueError(f"unexpected text tower {name!r}")
            return transformers.RobertaModel(transformers.RobertaConfig(**cfg), add_pooling_layer=True)

    cm_model.RobertaModel = _Offline
    try:
        yield
    finally:
        cm_model.RobertaModel = original


def build_clap_model(
    amodel: str = "HTSAT-tiny", device: str | torch.device = "cpu", roberta_overrides: dict | None = None
) -> torch.nn.Module:
    """laion-clap's CLAP model (non-fusion, RoBERTa text), random weights, eval mode.

    roberta_overrides: changes to `ROBERTA_BASE` (e.g. num_hidden_layers=1 for fast tests); a model
      built with overrides cannot load the released checkpoint.
    """
    cm = _clap_module()
    with _quiet(), _roberta_from_config(roberta_overrides):
        model, _cfg = cm.create_model(
            amodel, "roberta", precision="fp32", device=torch.device(device), enable_fusion=False
        )
    return model.eval()


def load_roberta_tokenizer(directory: str | os.PathLike | None = None):
    """RoBERTa byte-level BPE tokenizer from local `vocab.json` + `merges.txt` (checked, see `check_tokenizer`)."""
    set_offline_env()
    if directory is None:
        directory = require_weights("roberta-tokenizer")["roberta-tokenizer"]
    d = Path(directory)
    from transformers import RobertaTokenizer  # optional package (metrics extra)

    # from_pretrained on the directory: the constructor's keyword names changed across transformers
    # releases and unknown ones are ignored, which silently yields an empty tokenizer.
    tok = RobertaTokenizer.from_pretrained(str(d), local_files_only=True)
    check_tokenizer(tok, source=str(d))
    return tok


def tokenize(tokenizer, captions: Sequence[str]) -> dict[str, torch.Tensor]:
    """captions -> {"input_ids": [B, 77], "attention_mask": [B, 77]} as laion-clap does it."""
    enc = tokenizer(
        list(captions), padding="max_length", truncation=True, max_length=MAX_TEXT_LEN, return_tensors="pt"
    )
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def check_tokenizer(tokenizer, source: str = "") -> None:
    """Raise EmptyTokenizerError unless "a dog barks" tokenises to more than the 2 special tokens."""
    enc = tokenize(tokenizer, ["a dog barks"])
    n = int(enc["attention_mask"].sum())
    if tuple(enc["input_ids"].shape) != (1, MAX_TEXT_LEN) or n <= 2:
        raise EmptyTokenizerError(
            f"the CLAP text tokenizer{' from ' + source if source else ''} is empty or broken: 'a dog barks' gave "
            f"{n} token(s) (expected more than 2). CLAP scores computed with it would be meaningless. Put the "
            f"roberta-base vocab.json and merges.txt in the directory named by SOUNDCTM_ROBERTA_TOKENIZER "
            f"(see soundctm.metrics.pretrained.weights)."
        )


def clap_audio_input(x: np.ndarray, normalise: bool = True) -> np.ndarray:
    """48 kHz mono clip [N] -> CLAP input [480000] (peak -1 dB, int16 round trip, repeat-pad / cut)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"expected a non-empty mono waveform [N], got shape {x.shape}")
    if normalise:
        peak = float(np.max(np.abs(x)))
        if peak > 0:
            x = x * (10.0 ** (-1.0 / 20.0) / peak)
        x = (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16).astype(np.float64) / 32767.0
    if len(x) < CLIP_SAMPLES:
        x = np.tile(x, CLIP_SAMPLES // len(x))
        x = np.pad(x, (0, CLIP_SAMPLES - len(x)))
    else:
        x = x[:CLIP_SAMPLES]
    return x.astype(np.float32)


class ClapEmbedder(Embedder):
    """CLAP-score embedder.

    forward(list of 48 kHz mono [N_i]) -> {"embeddings": [B, 512] L2-normalised, "frames": ones [B]};
    embed_text(captions) -> [B, 512] L2-normalised; features(waveforms, sample_rate) -> per-stage maps.
    """

    name = "laion-clap"
    version = "630k-audioset-best/HTSAT-tiny/roberta/no-fusion"
    sample_rate = SAMPLE_RATE
    window = CLIP_SAMPLES
    hop = None
    channels = "mono"
    outputs = ("embeddings",)
    has_text = True

    def __init__(
        self, model: torch.nn.Module, tokenizer, device: str | torch.device = "cpu", batch_size: int = 8
    ):
        check_tokenizer(tokenizer)
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.batch_size = int(batch_size)

    @property
    def min_samples(self) -> int:
        return 1  # repeat-padding is part of the protocol

    @classmethod
    def from_weights(
        cls,
        path=None,
        tokenizer_dir=None,
        device: str | torch.device = "cpu",
        roberta_overrides: dict | None = None,
        **kw,
    ) -> ClapEmbedder:
        """Load `630k-audioset-best.pt` (or `path`) and the local RoBERTa tokenizer; one error for all missing.

        roberta_overrides: text-tower size changes for `build_clap_model` (tests only).
        """
        keys = [k for k, v in (("laion-clap", path), ("roberta-tokenizer", tokenizer_dir)) if v is None]
        found = require_weights(*keys) if keys else {}
        path = path if path is not None else found["laion-clap"]
        tokenizer_dir = tokenizer_dir if tokenizer_dir is not None else found["roberta-tokenizer"]
        tokenizer = load_roberta_tokenizer(tokenizer_dir)
        model = build_clap_model(device="cpu", roberta_overrides=roberta_overrides)
        # position_ids is a non-persistent buffer in current transformers (laion-clap drops it too).
        load_into(
            model,
            load_state_dict(path),
            ignore_prefixes=("text_branch.embeddings.position_ids",),
            source=str(path),
        )
        return cls(model, tokenizer, device=device, **kw)

    # ---------------------------------------------------------------- audio
    def _audio_batches(self, waveforms: list[np.ndarray], normalise: bool = True):
        for i in range(0, len(waveforms), self.batch_size):
            chunk = waveforms[i : i + self.batch_size]
            yield torch.from_numpy(np.stack([clap_audio_input(w, normalise) for w in chunk])).to(self.device)

    @torch.no_grad()
    def forward(self, waveforms: list[np.ndarray]) -> dict[str, np.ndarray]:
        outs = []
        for xb in self._audio_batches(waveforms):
            data = [{"waveform": w, "longer": torch.tensor(False)} for w in xb]
            outs.append(self.model.get_audio_embedding(data).float().cpu().numpy())
        emb = np.concatenate(outs, 0)
        return {"embeddings": emb, "frames": np.ones(len(emb), np.int64)}

    def features(
        self, waveforms, sample_rate: int = SAMPLE_RATE, normalise: bool = False, grad: bool = False
    ) -> list[torch.Tensor]:
        """Per-stage audio-encoder features for CLAP-LPAPS.

        waveforms: list of [N] / [C, N] clips, or a [B, N] batch, at `sample_rate` (resampled to 48 kHz,
          mono, repeat-padded / cut to 10 s; peak normalisation + int16 round trip only if `normalise`).
        Returns one tensor per Swin stage (HTSAT-tiny: 4), stage k: [B, L_k, C_k] (the stage's output
          tokens, after its patch merging), not channel-normalised.
        """
        if grad:
            if not isinstance(waveforms, torch.Tensor) or waveforms.ndim != 2 or sample_rate != SAMPLE_RATE:
                raise ValueError("features(grad=True) needs a [B, N] tensor at 48 kHz")
            x = waveforms
            if x.shape[1] < CLIP_SAMPLES:
                reps = CLIP_SAMPLES // x.shape[1]
                x = F.pad(x.repeat(1, reps), (0, CLIP_SAMPLES - reps * x.shape[1]))
            batches = [x[:, :CLIP_SAMPLES].to(self.device)]
        else:
            prepared = prepare_waveforms(waveforms, sample_rate, SAMPLE_RATE)
            batches = list(self._audio_batches(prepared, normalise))
        branch = self.model.audio_branch
        stages: list[list[torch.Tensor]] = [[] for _ in branch.layers]
        captured: list[torch.Tensor] = []
        hooks = [
            layer.register_forward_hook(lambda m, i, o: captured.append(o[0] if isinstance(o, tuple) else o))
            for layer in branch.layers
        ]
        try:
            with torch.set_grad_enabled(grad):
                for xb in batches:
                    captured.clear()
                    branch(
                        {"waveform": xb, "longer": torch.zeros(len(xb), dtype=torch.bool, device=self.device)},
                        device=self.device
                    )
                    for k, t in enumerate(captured):
                        stages[k].append(t if grad else t.detach())
        finally:
            for h in hooks:
                h.remove()
        return [torch.cat(s, 0) for s in stages]

    # ---------------------------------------------------------------- text
    @torch.no_grad()
    def embed_text(self, captions: Sequence[str]) -> np.ndarray:
        return self.text_embedding(captions).float().cpu().numpy()

    def text_embedding(self, captions: Sequence[str]) -> torch.Tensor:
        """captions: B strings -> [B, 512] L2-normalised (torch, on the model's device)."""
        if isinstance(captions, str):
            raise TypeError("captions must be a sequence of strings, not one string")
        outs = []
        for i in range(0, len(captions), 64):
            data = tokenize(self.tokenizer, captions[i : i + 64])
            outs.append(self.model.get_text_embedding({k: v.to(self.device) for k, v in data.items()}))
        return torch.cat(outs, 0)


def build(weights=None, tokenizer_dir=None, device: str = "cpu", **kw) -> ClapEmbedder:
    """Registry factory: LAION-CLAP 630k-audioset-best with local weights and tokenizer."""
    return ClapEmbedder.from_weights(weights, tokenizer_dir=tokenizer_dir, device=device, **kw)


register("laion-clap", build, overwrite=True)
