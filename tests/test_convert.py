"""`soundctm convert`: key-and-shape completeness of the released checkpoints' layouts, and numerical
equivalence of the converted modules with the official definitions.

The official state dicts are generated from `soundctm.commands.official`'s shape specs (written from the
official model definitions) with random values: at the release's sizes on the meta device (keys and
shapes only: what the real files must match), and at small sizes with real values. The converted small
models are compared with a direct implementation, in this file, of the official forward passes (the
stable-audio-tools DiT as SoundCTM-DiT wraps it, and GaussianDAC's decoder with weight norm), computed
from the official state dict itself, not from our modules.
"""

from __future__ import annotations

import argparse
import math

import pytest
import torch
import torch.nn.functional as F

from soundctm.commands import convert as C
from soundctm.commands import official as O
from soundctm.edm import EDMScalings, Precond
from soundctm.nn.vae import AudioAutoencoder, VAEConfig, count_parameters, vae_config
from soundctm.presets import build_student, build_teacher, model_preset
from soundctm.train.checkpoint import load_export

SMALL_DIT = dict(io_channels=8, embed_dim=128, depth=2, num_heads=2, cond_token_dim=64, global_cond_dim=128)
SMALL_DAC = dict(encoder_dim=4, encoder_rates=(2, 4), latent_dim=4, decoder_dim=16, decoder_rates=(4, 2))


def _official_dit(cfg, teacher, device="cpu", seed=0, scale=0.05) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in O.official_dit_shapes(**cfg, teacher=teacher).items():
        if k.endswith(".beta"):
            out[k] = torch.zeros(shape)
        elif k.endswith("inv_freq"):
            out[k] = O.rotary_inv_freq(2 * shape[0])
        elif device == "meta":
            out[k] = torch.empty(shape, device="meta")
        else:
            v = torch.randn(shape, generator=g) * scale
            out[k] = v + 1.0 if k.endswith(".gamma") else v
    if device != "meta":
        out["timestep_features.weight"] = torch.randn(out["timestep_features.weight"].shape, generator=g)
    return out


def _wrap(sd):
    """As the official training module saves it: the DiT under `dit.`, the frozen CLAP next to it."""
    return {**{"dit." + k: v for k, v in sd.items()}, "text_encoder.model.logit_scale_a": torch.tensor(1.0)}


# ------------------------------------------------------------------------------------- official DiT forward


def _lin(sd, p, x):
    return F.linear(x, sd[p + ".weight"], sd.get(p + ".bias"))


def _time_embed(sd, c):
    f = 2 * math.pi * c[:, None] @ sd["timestep_features.weight"].T
    f = torch.cat([f.cos(), f.sin()], dim=-1)
    return _lin(sd, "to_timestep_embed.2", F.silu(_lin(sd, "to_timestep_embed.0", f)))


def _guidance_embedding(w, dim):  # the official SA_EDM.guidance_scale_embedding
    w = w * 1000.0
    half = dim // 2
    e = math.log(10000.0) / (half - 1)
    e = torch.exp(torch.arange(half, dtype=torch.float32) * -e)
    e = w[:, None] * e[None, :]
    return torch.cat([torch.sin(e), torch.cos(e)], dim=1)


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def _rope(t, freqs):
    rot = freqs.shape[-1]
    t, rest = t[..., :rot], t[..., rot:]
    return torch.cat([t * freqs.cos() + _rotate_half(t) * freqs.sin(), rest], dim=-1)


def official_dit_forward(sd, x, t_noise, cond, heads, s_noise=None, cfg=None):
    """stable-audio-tools' DiffusionTransformer._forward (continuous transformer, prepended global token) as
    the official SoundCTM code calls it: global = emb(t) [+ emb(s) + guidance embedding(cfg)]."""
    ctx = _lin(sd, "to_cond_embed.2", F.silu(_lin(sd, "to_cond_embed.0", cond)))
    glob = _time_embed(sd, t_noise)
    if s_noise is not None:
        glob = glob + _time_embed(sd, s_noise)
    if cfg is not None:
        glob = glob + _guidance_embedding(cfg, glob.shape[-1])
    h = F.conv1d(x, sd["preprocess_conv.weight"]) + x
    h = _lin(sd, "transformer.project_in", h.transpose(1, 2))
    h = torch.cat([glob[:, None], h], dim=1)
    b, n, e = h.shape
    dh = e // heads
    pos = torch.arange(n, dtype=torch.float32)
    freqs = torch.einsum("i,j->ij", pos, sd["transformer.rotary_pos_emb.inv_freq"])
    freqs = torch.cat([freqs, freqs], dim=-1)
    for i in range(1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.layers."))):
        p = f"transformer.layers.{i}."

        def ln(name, z, p=p):
            return F.layer_norm(z, (e,), sd[p + name + ".gamma"], sd[p + name + ".beta"])

        q, k, v = _lin(sd, p + "self_attn.to_qkv", ln("pre_norm", h)).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, n, heads, dh).transpose(1, 2) for z in (q, k, v))
        q, k = _rope(q, freqs), _rope(k, freqs)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, e)
        h = h + _lin(sd, p + "self_attn.to_out", a)
        q = _lin(sd, p + "cross_attn.to_q", ln("cross_attend_norm", h)).reshape(b, n, heads, dh).transpose(1, 2)
        k, v = _lin(sd, p + "cross_attn.to_kv", ctx).chunk(2, dim=-1)
        kvh = k.shape[-1] // dh
        k, v = (z.reshape(b, ctx.shape[1], kvh, dh).transpose(1, 2).repeat_interleave(heads // kvh, dim=1)
                for z in (k, v))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, e)
        h = h + _lin(sd, p + "cross_attn.to_out", a)
        u, gate = _lin(sd, p + "ff.ff.0.proj", ln("ff_norm", h)).chunk(2, dim=-1)
        h = h + _lin(sd, p + "ff.ff.2", u * F.silu(gate))
    out = _lin(sd, "transformer.project_out", h).transpose(1, 2)[:, :, 1:]
    return F.conv1d(out, sd["postprocess_conv.weight"]) + out


# ------------------------------------------------------------------------------------- DiT tests


@pytest.mark.parametrize("kind", ["student", "teacher"])
def test_release_sized_dit_maps_key_for_key_onto_the_official_preset(kind):
    """The release's configuration (meta tensors: keys and shapes only) converts to exactly the state dict of
    our paper-dit-official module, every official key mapped or dropped with a reason."""
    sd = _official_dit(O.DIT_V1, kind == "teacher", device="meta")
    tensors, preset, report = C.convert_dit(_wrap(sd), kind, log=lambda *a: None)
    assert preset.name == "paper-dit-official"
    model = (build_teacher if kind == "teacher" else build_student)("paper-dit-official", device="meta")
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    n_drop = 3 * O.DIT_V1["depth"] + 1 + (2 if kind == "teacher" else 0)
    assert report["dropped_keys"] == n_drop and len(tensors) + n_drop == len(sd)
    assert report["ignored_clap_keys"] == 1


def test_converted_student_equals_the_official_forward(tmp_path):
    torch.manual_seed(0)
    sd = _official_dit(SMALL_DIT, teacher=False)
    tensors, preset, _ = C.convert_dit(_wrap(sd), "student", num_heads=SMALL_DIT["num_heads"], latent_frames=12,
                                       log=lambda *a: None)
    path = C.write_export(tmp_path / "student.safetensors", tensors, "student", preset, {"file": "test"})
    student = load_export(path)
    b, t_len = 3, 12
    z = torch.randn(b, SMALL_DIT["io_channels"], t_len)
    cond = F.normalize(torch.randn(b, 1, SMALL_DIT["cond_token_dim"]), dim=-1)
    t, s, w = torch.tensor([80.0, 3.0, 0.5]), torch.tensor([10.0, 0.002, 0.1]), torch.tensor([5.0, 3.0, 4.5])
    sc = EDMScalings(0.5)
    r = lambda v: v[:, None, None]  # noqa: E731
    f = official_dit_forward(sd, r(sc.c_in(t)) * z, t.log() / 4, cond, SMALL_DIT["num_heads"], s.log() / 4, w)
    g = r(sc.c_skip(t)) * z + r(sc.c_out(t)) * f  # the official inner "edm" parametrisation
    want = r(s / t) * z + r(1 - s / t) * g  # ... and the CTM jump ("euler" parametrisation)
    got = student(z, t, s, cond, w)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), float((got - want).abs().max())


def test_converted_teacher_equals_the_official_denoiser(tmp_path):
    torch.manual_seed(1)
    sd = _official_dit(SMALL_DIT, teacher=True, seed=1)
    tensors, preset, _ = C.convert_dit(sd, "teacher", num_heads=SMALL_DIT["num_heads"], latent_frames=10,
                                       log=lambda *a: None)
    teacher = load_export(C.write_export(tmp_path / "teacher.safetensors", tensors, "teacher", preset, {}))
    assert isinstance(teacher, Precond)
    z = torch.randn(2, SMALL_DIT["io_channels"], 10)
    cond = torch.randn(2, 1, SMALL_DIT["cond_token_dim"])
    t = torch.tensor([20.0, 0.3])
    sc = EDMScalings(0.5)
    r = lambda v: v[:, None, None]  # noqa: E731
    want = r(sc.c_skip(t)) * z + r(sc.c_out(t)) * official_dit_forward(sd, r(sc.c_in(t)) * z, t.log() / 4, cond, 2)
    assert torch.allclose(teacher(z, t, cond), want, atol=1e-5, rtol=1e-4)


def test_dit_layout_errors_name_the_keys():
    sd = _official_dit(SMALL_DIT, teacher=False)
    bad = dict(sd)
    del bad["transformer.layers.1.cross_attn.to_kv.weight"]
    with pytest.raises(C.ConversionError, match=r"missing: transformer\.layers\.1\.cross_attn\.to_kv\.weight"):
        C.convert_dit(bad, "student", num_heads=2, log=lambda *a: None)
    bad = dict(sd, **{"transformer.layers.0.ff_norm.beta": torch.ones(SMALL_DIT["embed_dim"])})
    with pytest.raises(C.ConversionError, match="beta buffer must be zero"):
        C.convert_dit(bad, "student", num_heads=2, log=lambda *a: None)
    bad = dict(sd, **{"transformer.project_out.weight": torch.zeros(9, SMALL_DIT["embed_dim"])})
    with pytest.raises(C.ConversionError, match="shape: transformer.project_out.weight"):
        C.convert_dit(bad, "student", num_heads=2, log=lambda *a: None)
    with pytest.raises(C.ConversionError, match="looks like a student"):
        C.convert_dit(sd, "teacher", num_heads=2, log=lambda *a: None)
    v2 = _official_dit(dict(O.DIT_V1, cond_token_dim=768), teacher=False, device="meta")
    with pytest.raises(C.ConversionError, match="v2 variant"):
        C.convert_dit(v2, "student", log=lambda *a: None)


def test_guidance_and_shared_embeddings_of_the_official_layout():
    p = model_preset("paper-dit-official")
    assert p.backbone.cond_mlp and p.s_embedding == "shared" and p.omega_embedding == "guidance-sinusoidal"
    student = build_student("tiny-dit")
    assert not student.net.cfg.cond_mlp  # today's presets keep their layout
    w = torch.tensor([1.0, 5.0])
    from soundctm.nn.embed import GuidanceSinusoidal

    assert torch.allclose(GuidanceSinusoidal(64)(w), _guidance_embedding(w, 64), atol=1e-6)


# ------------------------------------------------------------------------------------- GaussianDAC


def _official_dac(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in O.official_dac_shapes(**cfg).items():
        v = torch.randn(shape, generator=g) * 0.3
        out[k] = v.abs() + 0.5 if k.endswith((".weight_g", ".alpha")) else v
    return out


def _wn(sd, p):
    v, gain = sd[p + ".weight_v"], sd[p + ".weight_g"]
    return gain * v / v.flatten(1).norm(dim=1).reshape(-1, *([1] * (v.ndim - 1)))


def _snake(x, alpha):
    return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


def official_dac_decode(sd, z, rates):
    """GaussianDAC.decode: post_conv, first conv, [Snake, transposed conv, 3 residual units] per rate,
    Snake, conv to one channel, tanh."""
    def conv(p, x, **kw):
        return F.conv1d(x, _wn(sd, p), sd[p + ".bias"], **kw)

    def residual(p, x, dil):
        y = conv(p + ".block.3", _snake(conv(p + ".block.1", _snake(x, sd[p + ".block.0.alpha"]), dilation=dil,
                                             padding=3 * dil), sd[p + ".block.2.alpha"]))
        return x + y

    x = conv("decoder.model.0", conv("post_conv", z), padding=3)
    for i, s in enumerate(rates):
        p = f"decoder.model.{i + 1}.block"
        x = _snake(x, sd[p + ".0.alpha"])
        x = F.conv_transpose1d(x, _wn(sd, p + ".1"), sd[p + ".1.bias"], stride=s, padding=math.ceil(s / 2))
        for j, dil in enumerate((1, 3, 9)):
            x = residual(f"{p}.{j + 2}", x, dil)
    m = len(rates)
    x = _snake(x, sd[f"decoder.model.{m + 1}.alpha"])
    return torch.tanh(conv(f"decoder.model.{m + 2}", x, padding=3))


def test_dac_spec_is_the_papers_63_5m_vae_and_maps_onto_ours():
    spec = O.official_dac_shapes(**O.DAC_RELEASE)
    n = sum(math.prod(s) for s in spec.values())
    assert round(n / 1e6, 1) == 63.5  # App. C.2: "63.5M parameters"
    cfg = VAEConfig(**{**vae_config("paper").__dict__, "latent_convs": True})
    with torch.device("meta"):
        ours = AudioAutoencoder(cfg)
    mapped = {O.DAC_KEYMAP.target(k): s for k, s in spec.items()}
    own = {k: tuple(v.shape) for k, v in ours.state_dict().items()
           if k not in ("latent_mean", "latent_std", "sigma_data", "normalisation_fitted")}
    assert mapped == own
    assert count_parameters(ours) == n


@pytest.mark.parametrize("removed_weight_norm", [False, True])
def test_converted_vae_decodes_as_the_official_decoder(removed_weight_norm):
    sd = _official_dac(SMALL_DAC)
    src = dict(sd)
    if removed_weight_norm:  # a file saved after GaussianDAC.remove_weight_norm()
        for k in [k for k in sd if k.endswith(".weight_v")]:
            p = k[: -len(".weight_v")]
            src[p + ".weight"] = _wn(sd, p)
            del src[p + ".weight_g"], src[p + ".weight_v"]
    c = SMALL_DAC["latent_dim"]
    stats = {"z_mean": torch.randn(c), "z_std": torch.rand(c) + 0.5}
    kwargs = {**SMALL_DAC, "sample_rate": 44100, "double_z": True}
    vae, _ = C.convert_vae({"state_dict": src, "metadata": {"kwargs": kwargs}}, stats, log=lambda *a: None)
    z = torch.randn(2, c, 6)
    with torch.no_grad():
        got = vae.decode(z)
        raw = 2 * stats["z_std"][None, :, None] * z + stats["z_mean"][None, :, None]  # the official demo's
        want = official_dac_decode(sd, raw, SMALL_DAC["decoder_rates"])  # denormalisation, then decode
    assert got.shape == (2, 1, 6 * 8)
    assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())
    bad = {"state_dict": src, "metadata": {"kwargs": {**kwargs, "latent_dim": 8}}}
    with pytest.raises(C.ConversionError, match="latent_dim=8"):
        C.convert_vae(bad, stats, log=lambda *a: None)


# ------------------------------------------------------------------------------------- CLAP

SMALL_CLAP = dict(text_layers=1, hidden=16, intermediate=32, vocab=50, positions=20, joint=8, embed_dim=8,
                  depths=(2, 2), heads=(2, 4), window=4, spec_size=32, patch=4, mel_bins=8, n_fft=16, classes=5)


def test_clap_checkpoint_converts_and_its_layout_is_checked():
    spec = O.official_clap_shapes(**SMALL_CLAP)
    sd = {"module." + k: torch.zeros(s) for k, s in spec.items()}
    tensors, info = C.convert_clap({"state_dict": sd, "epoch": 45}, log=lambda *a: None, **SMALL_CLAP)
    assert set(tensors) == set(spec) - {"text_branch.embeddings.position_ids"}
    assert info["dropped"] == ["text_branch.embeddings.position_ids"]
    in_student = {"text_encoder.model." + k: torch.zeros(s) for k, s in spec.items()} | {"dit.x": torch.zeros(1)}
    assert set(C.convert_clap(in_student, log=lambda *a: None, **SMALL_CLAP)[0]) == set(tensors)
    sd.pop("module.audio_branch.layers.0.blocks.1.attn_mask")
    with pytest.raises(C.ConversionError, match=r"missing: audio_branch\.layers\.0\.blocks\.1\.attn_mask"):
        C.convert_clap(sd, log=lambda *a: None, **SMALL_CLAP)


def test_clap_spec_matches_the_laion_clap_module():
    pytest.importorskip("laion_clap")
    pytest.importorskip("transformers")
    from soundctm.metrics.pretrained.clap import build_clap_model

    own = {k: tuple(v.shape) for k, v in build_clap_model().state_dict().items()}
    spec = O.official_clap_shapes(with_position_ids=False)
    assert own == spec


# ------------------------------------------------------------------------------------- files and CLI


def test_unpicklable_objects_are_refused(tmp_path):
    p = tmp_path / "bad.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1)}, p)
    with pytest.raises(C.ConversionError, match="weights_only=True"):
        C.read_official(p)


def test_cli_help_and_missing_files(tmp_path, capsys, monkeypatch):
    from soundctm.cli import main

    assert main(["convert", "--help"]) == 0  # every command's --help: status 0, no SystemExit out of main
    out = capsys.readouterr().out
    for what in ("student", "teacher", "vae", "clap"):
        assert f"soundctm convert {what}" in out
    monkeypatch.setenv("SOUNDCTM_WEIGHTS", str(tmp_path / "w"))
    assert main(["convert", "all", "--release", str(tmp_path / "rel")]) == 2
    err = capsys.readouterr().err
    for f in O.RELEASE_FILES.values():
        assert str(tmp_path / "rel" / f) in err
    assert main(["convert", "teacher"]) == 2
    assert "teacher_model_path" in capsys.readouterr().err


def test_cli_converts_a_release_layout(tmp_path, monkeypatch):
    from soundctm.cli import main

    monkeypatch.setenv("SOUNDCTM_WEIGHTS", str(tmp_path / "w"))
    rel = tmp_path / "rel"
    for role, obj in (("student", _wrap(_official_dit(SMALL_DIT, teacher=False))),
                      ("vae", {"state_dict": _official_dac(SMALL_DAC), "metadata": {"kwargs": dict(SMALL_DAC)}}),
                      ("z_stats", {"z_mean": torch.zeros(4), "z_std": torch.ones(4)})):
        (rel / O.RELEASE_FILES[role]).parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, rel / O.RELEASE_FILES[role])
    assert main(["convert", "student", "--release", str(rel), "--heads", "2"]) == 0
    st = load_export(tmp_path / "w" / "soundctm-dit-1b-student.safetensors")
    assert st.export_metadata["extra"]["converted_from"]["file"] == "ac_v1_iclr_ema_0999_010446.pt"
    assert main(["convert", "vae", "--release", str(rel)]) == 0
    vae = AudioAutoencoder.load(tmp_path / "w" / "gaussian-dac-44k.safetensors")
    assert vae.config.latent_convs and float(vae.sigma_data) == 0.5 and bool(vae.normalisation_fitted)
