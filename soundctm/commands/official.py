"""The released SoundCTM checkpoints' layouts, as data: expected shapes and key maps into our modules.

Written from the official model definitions (read for their key names and shapes, not copied):

* SoundCTM-DiT (koichi-saito-sony/soundctm_dit_iclr, `sa_edm/stable_audio_tools/models/dit.py`,
  `dit_teacher.py`, `transformer.py`, config `configs/dit_config/dit_v1.json`): stable-audio-tools'
  `DiffusionTransformer` with `transformer_type="continuous_transformer"`, io_channels 64, embed_dim
  1536, depth 24, 24 heads, cond_token_dim 512 (v1: the CLAP projection output),
  project_cond_tokens false, global_cond_dim 1536 (built by the teacher but never used in its
  forward; the student's copy is commented out), prepended global token; wrapped as `dit.` in the
  training module (`sa_edm/models_edm.py`), next to the frozen CLAP as `text_encoder.model.`.
* GaussianDAC (`sa_edm/dac/model/dac.py`, `sa_edm/dac/nn/layers.py`): DAC's encoder/decoder with
  `torch.nn.utils.weight_norm` convolutions (weight_g / weight_v), a 1x1 `pre_conv` on the posterior
  moments and a 1x1 `post_conv` before the decoder; saved by audiotools as
  {"state_dict", "metadata": {"kwargs": constructor arguments}}.
* LAION-CLAP 630k-audioset-best (LAION-AI/CLAP `clap_module/model.py`, `htsat.py`): HTSAT-tiny audio
  branch, RoBERTa-base text branch (Hugging Face `RobertaModel` with pooler), MLP transforms and
  projections, two logit scales; saved as {"state_dict": {"module." + key}}.

A key map is an ordered list of regex substitutions applied to every kept key, plus the keys that
are dropped, each with its reason and (where the value is implied by our module) a check of the value.
`*_shapes(...)` give {key: shape} of the official state dict for any size of the parametric
architecture (the tests build random official state dicts from them at small sizes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["KeyMap", "Drop", "DIT_KEYMAP", "DAC_KEYMAP", "CLAP_KEYMAP", "official_dit_shapes", "official_dac_shapes",
           "official_clap_shapes", "rotary_inv_freq", "DIT_V1", "DAC_RELEASE", "RELEASE_FILES"]


# ------------------------------------------------------------------------------------------------ maps


@dataclass(frozen=True)
class Drop:
    """Official keys (regex) that have no counterpart in our module; `check(value)` returns an error or None."""

    pattern: str
    reason: str
    check: Callable[[torch.Tensor], str | None] | None = None


@dataclass(frozen=True)
class KeyMap:
    """Official key -> our key: `rules` (regex, replacement) applied in order to every key not dropped;
    `transforms` (regex on OUR key, function) reshape values (e.g. a [N, 1] matrix into our [N] vector)."""

    name: str
    rules: tuple[tuple[str, str], ...]
    drops: tuple[Drop, ...] = ()
    transforms: tuple[tuple[str, Callable[[torch.Tensor], torch.Tensor]], ...] = field(default_factory=tuple)

    def dropped(self, key: str) -> Drop | None:
        return next((d for d in self.drops if re.fullmatch(d.pattern, key)), None)

    def target(self, key: str) -> str:
        for pat, rep in self.rules:
            key = re.sub(pat, rep, key)
        return key

    def transform(self, our_key: str, value: torch.Tensor) -> torch.Tensor:
        for pat, fn in self.transforms:
            if re.fullmatch(pat, our_key):
                value = fn(value)
        return value


def _all_zero(v: torch.Tensor) -> str | None:
    return None if not bool(v.any()) else "a bias-free LayerNorm's beta buffer must be zero (our LayerNorm has no bias)"


def rotary_inv_freq(rotary_dim: int) -> torch.Tensor:
    """The rotary frequencies our DiT uses (`nn.dit._rotary`): 1 / 10000^(k / (rotary_dim / 2)), k < rotary_dim / 2."""
    half = rotary_dim // 2
    return 1.0 / (10000 ** (torch.arange(half, dtype=torch.float32) / half))


def _rotary_matches(v: torch.Tensor) -> str | None:
    want = rotary_inv_freq(2 * v.numel())
    if v.shape != want.shape or not torch.allclose(v.float(), want, rtol=1e-5, atol=0):
        return f"rotary frequencies {v.flatten()[:4].tolist()}... differ from ours {want[:4].tolist()}..."
    return None


# stable-audio-tools DiT (continuous_transformer) -> soundctm.nn.dit.DiT (keys under the Precond / CTMStudent `net.`)
DIT_KEYMAP = KeyMap(
    "SoundCTM-DiT",
    rules=(
        (r"^timestep_features\.weight$", "time_embed.features.weight"),
        (r"^to_timestep_embed\.(0|2)\.", r"time_embed.mlp.\1."),
        (r"^to_cond_embed\.(0|2)\.weight$", r"cond_embed.\1.weight"),
        (r"^preprocess_conv\.weight$", "pre_conv.weight"),
        (r"^postprocess_conv\.weight$", "post_conv.weight"),
        (r"^transformer\.project_in\.weight$", "proj_in.weight"),
        (r"^transformer\.project_out\.weight$", "proj_out.weight"),
        (r"^transformer\.layers\.(\d+)\.", r"blocks.\1."),
        (r"^(blocks\.\d+)\.pre_norm\.gamma$", r"\1.norm1.weight"),
        (r"^(blocks\.\d+)\.cross_attend_norm\.gamma$", r"\1.norm2.weight"),
        (r"^(blocks\.\d+)\.ff_norm\.gamma$", r"\1.norm3.weight"),
        (r"^(blocks\.\d+)\.self_attn\.to_qkv\.", r"\1.attn.qkv."),
        (r"^(blocks\.\d+)\.self_attn\.to_out\.", r"\1.attn.out."),
        (r"^(blocks\.\d+)\.cross_attn\.to_q\.", r"\1.cross.q."),
        (r"^(blocks\.\d+)\.cross_attn\.to_kv\.", r"\1.cross.kv."),
        (r"^(blocks\.\d+)\.cross_attn\.to_out\.", r"\1.cross.out."),
        (r"^(blocks\.\d+)\.ff\.ff\.0\.proj\.", r"\1.ff.proj_in."),
        (r"^(blocks\.\d+)\.ff\.ff\.2\.", r"\1.ff.proj_out."),
        (r"^", "net."),
    ),
    drops=(
        Drop(r"transformer\.layers\.\d+\.(pre_norm|cross_attend_norm|ff_norm)\.beta",
             "the bias-free LayerNorm's zero beta buffer", _all_zero),
        Drop(r"transformer\.rotary_pos_emb\.inv_freq", "rotary frequencies (a buffer; ours are computed)",
             _rotary_matches),
        Drop(r"to_global_embed\.[02]\.weight",
             "the teacher's global-conditioning MLP: built (global_cond_dim 1536) but never applied in its forward"),
    ),
    transforms=((r"net\.time_embed\.features\.weight", lambda v: v.reshape(-1)),),  # [128, 1] -> [128]
)

# GaussianDAC -> soundctm.nn.vae.AudioAutoencoder ("dac" architecture, latent_convs=True)
DAC_KEYMAP = KeyMap(
    "GaussianDAC",
    rules=(
        (r"^encoder\.block\.(\d+)\.block\.(\d+)\.", r"encoder.net.\1.\2."),
        (r"^encoder\.block\.(\d+)\.", r"encoder.net.\1."),
        (r"^decoder\.model\.(\d+)\.block\.(\d+)\.", r"decoder.net.\1.\2."),
        (r"^decoder\.model\.(\d+)\.", r"decoder.net.\1."),
        (r"^pre_conv\.", "encoder.pre_conv."),
        (r"^post_conv\.", "decoder.post_conv."),
        (r"\.weight_g$", ".parametrizations.weight.original0"),
        (r"\.weight_v$", ".parametrizations.weight.original1"),
    ),
)

# LAION-CLAP: the laion-clap package's own CLAP module is ours (soundctm.metrics.pretrained.clap); the map
# only removes the DataParallel / training-module prefixes and the buffer newer transformers no longer keep.
CLAP_KEYMAP = KeyMap(
    "LAION-CLAP",
    rules=(),
    drops=(Drop(r"text_branch\.embeddings\.position_ids",
                "RoBERTa's position ids: a non-persistent buffer in transformers >= 4.31 (laion-clap drops it too)"),),
)


# ------------------------------------------------------------------------------------------------ shapes

# The released configurations.
DIT_V1 = dict(io_channels=64, embed_dim=1536, depth=24, num_heads=24, cond_token_dim=512, global_cond_dim=1536)
DAC_RELEASE = dict(encoder_dim=64, encoder_rates=(4, 4, 8, 8), latent_dim=64, decoder_dim=1536,
                   decoder_rates=(8, 8, 4, 4))

# File names of the release (the Hugging Face repository koichisaito/soundctm_dit, as its demo.py fetches them)
RELEASE_FILES = {
    "student": "model_checkpoints/soundctm/ac_v1_iclr_ema_0999_010446.pt",
    "z_stats": "model_checkpoints/soundctm/z_stats.pth",
    "vae": "utils_checkpoints/vae/gaussiandac/weights.pth",
    "clap": "utils_checkpoints/clap/630k-audioset-best.pt",
}

TIMESTEP_FEATURES = 256  # hard-coded in the official DiT
FF_MULT = 4


def official_dit_shapes(io_channels: int, embed_dim: int, depth: int, num_heads: int, cond_token_dim: int,
                        global_cond_dim: int = 0, *, teacher: bool) -> dict[str, tuple[int, ...]]:
    """{key: shape} of the official DiT's state dict (continuous transformer, prepend global token,
    project_cond_tokens false). The teacher also holds `to_global_embed` when global_cond_dim > 0."""
    e, c, io = embed_dim, cond_token_dim, io_channels
    dh = e // num_heads
    s: dict[str, tuple[int, ...]] = {
        "timestep_features.weight": (TIMESTEP_FEATURES // 2, 1),
        "to_timestep_embed.0.weight": (e, TIMESTEP_FEATURES), "to_timestep_embed.0.bias": (e,),
        "to_timestep_embed.2.weight": (e, e), "to_timestep_embed.2.bias": (e,),
        "to_cond_embed.0.weight": (c, c), "to_cond_embed.2.weight": (c, c),
        "transformer.project_in.weight": (e, io), "transformer.project_out.weight": (io, e),
        "transformer.rotary_pos_emb.inv_freq": (max(dh // 2, 32) // 2,),
        "preprocess_conv.weight": (io, io, 1), "postprocess_conv.weight": (io, io, 1),
    }
    if teacher and global_cond_dim > 0:
        s["to_global_embed.0.weight"] = (e, global_cond_dim)
        s["to_global_embed.2.weight"] = (e, e)
    for i in range(depth):
        p = f"transformer.layers.{i}."
        for norm in ("pre_norm", "cross_attend_norm", "ff_norm"):
            s[p + norm + ".gamma"] = (e,)
            s[p + norm + ".beta"] = (e,)
        s[p + "self_attn.to_qkv.weight"] = (3 * e, e)
        s[p + "self_attn.to_out.weight"] = (e, e)
        s[p + "cross_attn.to_q.weight"] = (e, e)
        s[p + "cross_attn.to_kv.weight"] = (2 * c, c)
        s[p + "cross_attn.to_out.weight"] = (e, e)
        s[p + "ff.ff.0.proj.weight"] = (2 * FF_MULT * e, e)
        s[p + "ff.ff.0.proj.bias"] = (2 * FF_MULT * e,)
        s[p + "ff.ff.2.weight"] = (e, FF_MULT * e)
        s[p + "ff.ff.2.bias"] = (e,)
    return s


def official_dac_shapes(encoder_dim: int, encoder_rates, latent_dim: int, decoder_dim: int, decoder_rates,
                        ) -> dict[str, tuple[int, ...]]:
    """{key: shape} of GaussianDAC's state dict with weight norm (weight_g, weight_v, bias per conv)."""
    s: dict[str, tuple[int, ...]] = {}

    def conv(p, cin, cout, k, transposed=False):
        w = (cin, cout, k) if transposed else (cout, cin, k)
        s[p + ".weight_g"] = (w[0], 1, 1)
        s[p + ".weight_v"] = w
        s[p + ".bias"] = (cout,)

    def snake(p, ch):
        s[p + ".alpha"] = (1, ch, 1)

    def residual(p, ch):
        snake(p + ".block.0", ch)
        conv(p + ".block.1", ch, ch, 7)
        snake(p + ".block.2", ch)
        conv(p + ".block.3", ch, ch, 1)

    d = encoder_dim
    conv("encoder.block.0", 1, d, 7)
    for i, stride in enumerate(encoder_rates):
        p = f"encoder.block.{i + 1}.block"
        for j in range(3):
            residual(f"{p}.{j}", d)
        snake(f"{p}.3", d)
        conv(f"{p}.4", d, 2 * d, 2 * stride)
        d *= 2
    n = len(encoder_rates)
    snake(f"encoder.block.{n + 1}", d)
    conv(f"encoder.block.{n + 2}", d, 2 * latent_dim, 3)
    conv("decoder.model.0", latent_dim, decoder_dim, 7)
    for i, stride in enumerate(decoder_rates):
        cin, cout = decoder_dim // 2 ** i, decoder_dim // 2 ** (i + 1)
        p = f"decoder.model.{i + 1}.block"
        snake(f"{p}.0", cin)
        conv(f"{p}.1", cin, cout, 2 * stride, transposed=True)
        for j in range(3):
            residual(f"{p}.{j + 2}", cout)
    m = len(decoder_rates)
    cout = decoder_dim // 2 ** m
    snake(f"decoder.model.{m + 1}", cout)
    conv(f"decoder.model.{m + 2}", cout, 1, 7)
    conv("pre_conv", 2 * latent_dim, 2 * latent_dim, 1)
    conv("post_conv", latent_dim, latent_dim, 1)
    return s


def official_clap_shapes(*, text_layers: int = 12, hidden: int = 768, intermediate: int = 3072, vocab: int = 50265,
                         positions: int = 514, joint: int = 512, embed_dim: int = 96, depths=(2, 2, 6, 2),
                         heads=(4, 8, 16, 32), window: int = 8, spec_size: int = 256, patch: int = 4,
                         mel_bins: int = 64, n_fft: int = 1024, classes: int = 527,
                         with_position_ids: bool = True) -> dict[str, tuple[int, ...]]:
    """{key: shape} of LAION-CLAP (HTSAT + RoBERTa, no fusion) as the 630k-audioset-best checkpoint stores
    it (after removing its "module." prefix). Defaults: HTSAT-tiny and roberta-base."""
    s: dict[str, tuple[int, ...]] = {}

    def lin(p, cin, cout, bias=True):
        s[p + ".weight"] = (cout, cin)
        if bias:
            s[p + ".bias"] = (cout,)

    def norm(p, d):
        s[p + ".weight"] = (d,)
        s[p + ".bias"] = (d,)

    # text branch: Hugging Face RobertaModel with its pooler
    t = "text_branch."
    s[t + "embeddings.word_embeddings.weight"] = (vocab, hidden)
    s[t + "embeddings.position_embeddings.weight"] = (positions, hidden)
    s[t + "embeddings.token_type_embeddings.weight"] = (1, hidden)
    norm(t + "embeddings.LayerNorm", hidden)
    if with_position_ids:
        s[t + "embeddings.position_ids"] = (1, positions)
    for i in range(text_layers):
        p = f"{t}encoder.layer.{i}."
        for q in ("query", "key", "value"):
            lin(p + "attention.self." + q, hidden, hidden)
        lin(p + "attention.output.dense", hidden, hidden)
        norm(p + "attention.output.LayerNorm", hidden)
        lin(p + "intermediate.dense", hidden, intermediate)
        lin(p + "output.dense", intermediate, hidden)
        norm(p + "output.LayerNorm", hidden)
    lin(t + "pooler.dense", hidden, hidden)
    # transforms and projections (MLPLayers [joint] * 3 keeps Linear 0 and 3; projections Linear-ReLU-Linear)
    feats = int(embed_dim * 2 ** (len(depths) - 1))
    for branch in ("text_transform", "audio_transform"):
        lin(branch + ".sequential.0", joint, joint)
        lin(branch + ".sequential.3", joint, joint)
    lin("text_projection.0", hidden, joint)
    lin("text_projection.2", joint, joint)
    lin("audio_projection.0", feats, joint)
    lin("audio_projection.2", joint, joint)
    s["logit_scale_a"] = ()
    s["logit_scale_t"] = ()
    # audio branch: HTSAT (Swin transformer over the log-mel "image")
    a = "audio_branch."
    bins = n_fft // 2 + 1
    s[a + "spectrogram_extractor.stft.conv_real.weight"] = (bins, 1, n_fft)
    s[a + "spectrogram_extractor.stft.conv_imag.weight"] = (bins, 1, n_fft)
    s[a + "logmel_extractor.melW"] = (bins, mel_bins)
    for k in ("weight", "bias", "running_mean", "running_var"):
        s[a + "bn0." + k] = (mel_bins,)
    s[a + "bn0.num_batches_tracked"] = ()
    s[a + "patch_embed.proj.weight"] = (embed_dim, 1, patch, patch)
    s[a + "patch_embed.proj.bias"] = (embed_dim,)
    norm(a + "patch_embed.norm", embed_dim)
    res = spec_size // patch
    for i, (depth, nh) in enumerate(zip(depths, heads)):
        d, r = embed_dim * 2 ** i, res // 2 ** i
        w = min(window, r)
        for j in range(depth):
            p = f"{a}layers.{i}.blocks.{j}."
            norm(p + "norm1", d)
            s[p + "attn.relative_position_bias_table"] = ((2 * w - 1) ** 2, nh)
            s[p + "attn.relative_position_index"] = (w * w, w * w)
            lin(p + "attn.qkv", d, 3 * d)
            lin(p + "attn.proj", d, d)
            norm(p + "norm2", d)
            lin(p + "mlp.fc1", d, 4 * d)
            lin(p + "mlp.fc2", 4 * d, d)
            if j % 2 == 1 and r > window:  # shifted windows: the attention mask buffer
                s[p + "attn_mask"] = ((r // w) ** 2, w * w, w * w)
        if i < len(depths) - 1:
            lin(f"{a}layers.{i}.downsample.reduction", 4 * d, 2 * d, bias=False)
            norm(f"{a}layers.{i}.downsample.norm", 4 * d)
    norm(a + "norm", feats)
    freq_ratio = spec_size // mel_bins
    sf = spec_size // 2 ** (len(depths) - 1) // patch // freq_ratio
    s[a + "tscam_conv.weight"] = (classes, feats, sf, 3)
    s[a + "tscam_conv.bias"] = (classes,)
    lin(a + "head", classes, classes)
    return s


def dit_config_kwargs(io_channels: int, embed_dim: int, depth: int, num_heads: int, cond_token_dim: int,
                      **_) -> dict:
    """Our `DiTConfig` fields for an official DiT configuration (cross-attention key/value heads and the
    rotary width follow from the official attention: kv heads = cond dim / head dim, rotary = max(dh / 2, 32))."""
    dh = embed_dim // num_heads
    if cond_token_dim % dh:
        raise ValueError(f"cond_token_dim {cond_token_dim} is not a multiple of the head width {dh}")
    rot = max(dh // 2, 32)
    if rot > dh:
        raise ValueError(f"the official rotary embedding needs head width >= 32, got {dh}")
    return dict(latent_channels=io_channels, width=embed_dim, depth=depth, heads=num_heads, cond_dim=cond_token_dim,
                cross_kv_heads=cond_token_dim // dh, rotary_dim=rot, ff_mult=FF_MULT,
                time_feat_dim=TIMESTEP_FEATURES, time_embedding="fourier", cond_mlp=True)


def infer_dit_config(sd: dict[str, torch.Tensor], num_heads: int | None = None) -> dict:
    """The official DiT configuration (io, embed, depth, cond, global) read off a state dict's shapes. The
    head count is not in the shapes: `num_heads`, else the release's head width 64 (24 heads at width 1536)."""
    e, io = sd["transformer.project_in.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"transformer\.layers\.(\d+)\.", k)))
    cond = sd["to_cond_embed.0.weight"].shape[1]
    heads = num_heads or int(e) // 64
    if e % heads:
        raise ValueError(f"width {e} is not a multiple of {heads} heads")
    glob = sd.get("to_global_embed.0.weight")
    return dict(io_channels=int(io), embed_dim=int(e), depth=int(depth), num_heads=int(heads),
                cond_token_dim=int(cond), global_cond_dim=int(glob.shape[1]) if glob is not None else 0)


def weight_norm_split(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, v) with w = g v / ||v|| (norm over every dim but 0, as weight_norm(dim=0)): g = ||w||, v = w."""
    g = w.flatten(1).norm(dim=1).reshape(-1, *([1] * (w.ndim - 1)))
    return g, w

