"""`soundctm convert`: the released SoundCTM checkpoints into our modules, as safetensors.

    soundctm convert student [EMA.pt]     the SoundCTM-DiT-1B student (EMA weights, ac_v1_iclr)
                                          -> $SOUNDCTM_WEIGHTS/soundctm-dit-1b-student.safetensors
    soundctm convert teacher TEACHER.pt   its EDM teacher (the state dict the official training loads
                                          as teacher_model_path) -> .../soundctm-dit-1b-teacher.safetensors
    soundctm convert vae [weights.pth] [--stats z_stats.pth]
                                          the GaussianDAC VAE (44.1 kHz, 64 x 432 latents) with the
                                          release's latent statistics -> .../gaussian-dac-44k.safetensors
    soundctm convert clap [630k-audioset-best.pt]
                                          LAION-CLAP 630k-audioset-best (also read from the student
                                          file, which holds the CLAP it was trained with)
                                          -> .../630k-audioset-best.safetensors
    soundctm convert all                  every one found in --release (the teacher only with --teacher)

Sources default to the release's own layout under --release (default $SOUNDCTM_WEIGHTS/soundctm_dit,
the Hugging Face repository koichisaito/soundctm_dit as its demo fetches it):
    model_checkpoints/soundctm/ac_v1_iclr_ema_0999_010446.pt, model_checkpoints/soundctm/z_stats.pth,
    utils_checkpoints/vae/gaussiandac/weights.pth, utils_checkpoints/clap/630k-audioset-best.pt.
Nothing is downloaded: a missing file stops the command with the list of every expected path.

The official files are PyTorch pickles; they are read with `torch.load(weights_only=True)`, so a file
holding anything but tensors and plain containers is refused. Every key of a source is either mapped
(soundctm.commands.official: the key maps and the expected shapes, written from the official model
definitions) or dropped with a stated reason (and a check of its value where our module implies it);
the result must match our module's state dict key for key and shape for shape, or nothing is written.

The student and teacher become exports of the `paper-dit-official` preset (`load_export` rebuilds
them; the paper tier finds them under the names above); the VAE an `AudioAutoencoder` file (the
release's z_mean / z_std as its normalisation, sigma_data 0.5: z = (mu - mean) / (2 std)); the CLAP a
state dict of the laion-clap package's CLAP module (`SOUNDCTM_CLAP_WEIGHTS` points the metric and
the text encoder at it).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from pathlib import Path

import torch

from soundctm.cmdline import CLIError, Parser, out_file, run
from soundctm.commands.official import (
    CLAP_KEYMAP,
    DAC_KEYMAP,
    DIT_KEYMAP,
    DIT_V1,
    RELEASE_FILES,
    KeyMap,
    dit_config_kwargs,
    infer_dit_config,
    official_clap_shapes,
    official_dac_shapes,
    official_dit_shapes,
    weight_norm_split,
)
from soundctm.ctm import CTMStudent
from soundctm.edm import SIGMA_MIN, Precond
from soundctm.io import save_safetensors, sha256_file
from soundctm.nn.dit import DiTConfig
from soundctm.nn.vae import AudioAutoencoder, VAEConfig
from soundctm.paths import MissingAssetsError, weights_dir
from soundctm.presets import ModelPreset, build_backbone, model_preset
from soundctm.train.checkpoint import EXPORT_FORMAT

__all__ = ["ConversionError", "read_official", "convert_dit", "convert_vae", "convert_clap", "write_export",
           "default_outputs", "release_dir", "main"]

OFFICIAL_PRESET = "paper-dit-official"
SIGMA_DATA = 0.5  # the release's EDM sigma_data (its training summary), also the latent scale


class ConversionError(ValueError):
    """A source that does not have the layout it should (with every offending key named)."""


def release_dir() -> Path:
    return weights_dir() / "soundctm_dit"


def default_outputs() -> dict[str, Path]:
    w = weights_dir()
    return {"student": w / "soundctm-dit-1b-student.safetensors", "teacher": w / "soundctm-dit-1b-teacher.safetensors",
            "vae": w / "gaussian-dac-44k.safetensors", "clap": w / "630k-audioset-best.safetensors"}


# ------------------------------------------------------------------------------------------------ reading


def read_official(path: str | Path):
    """A released PyTorch file, loaded with weights_only=True (memory-mapped when the format allows)."""
    path = Path(path)
    if not path.is_file():
        raise MissingAssetsError([("official checkpoint", str(path))])
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # legacy (non-zip) serialisation cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling refusal or corrupt file
        raise ConversionError(
            f"{path}: not readable as tensors and plain containers with torch.load(weights_only=True) "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200]}). The converter never unpickles code; "
            "re-save the file's state dict with plain types if it holds other objects.") from None


def _unwrap(obj) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: unwraps {"state_dict"} / {"module"} (DeepSpeed) / {"model"}, strips "module."."""
    for k in ("state_dict", "module", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(k), dict):
            obj = obj[k]
            break
    if not isinstance(obj, dict):
        raise ConversionError(f"expected a state dict, got {type(obj).__name__}")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ConversionError("no tensors in this file")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def _sub(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _few(xs, n=8) -> str:
    xs = list(xs)
    return ", ".join(xs[:n]) + (f" ... (+{len(xs) - n})" if len(xs) > n else "")


def check_layout(sd: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], what: str,
                 optional: tuple[str, ...] = ()) -> None:
    """Every expected key present with its shape, nothing else (keys in `optional` may be absent)."""
    missing = sorted(k for k in set(expected) - set(sd) if k not in optional)
    unexpected = sorted(set(sd) - set(expected))
    bad = sorted(k for k in set(sd) & set(expected) if tuple(sd[k].shape) != tuple(expected[k]))
    if missing or unexpected or bad:
        parts = [f"missing: {_few(missing)}"] * bool(missing)
        parts += [f"unexpected: {_few(unexpected)}"] * bool(unexpected)
        shapes = (f"{k} {tuple(sd[k].shape)} (expected {tuple(expected[k])})" for k in bad)
        parts += [f"shape: {_few(shapes)}"] * bool(bad)
        raise ConversionError(f"{what}: " + "; ".join(parts))


def apply_keymap(sd: dict[str, torch.Tensor], keymap: KeyMap) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(our tensors, {dropped official key: reason}); a failed value check of a dropped key is an error."""
    out, dropped, errors = {}, {}, []
    for k, v in sd.items():
        d = keymap.dropped(k)
        if d is not None:
            err = d.check(v) if d.check is not None else None
            if err:
                errors.append(f"{k}: {err}")
            dropped[k] = d.reason
            continue
        t = keymap.target(k)
        if t in out:
            raise ConversionError(f"{keymap.name}: two official keys map to {t}")
        out[t] = keymap.transform(t, v)
    if errors:
        raise ConversionError(f"{keymap.name}: " + "; ".join(errors))
    return out, dropped


def _match_module(tensors: dict[str, torch.Tensor], module: torch.nn.Module, what: str) -> None:
    own = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    check_layout(tensors, own, f"{what} does not fit our module")


# ------------------------------------------------------------------------------------------------ DiT


def official_preset(cfg: dict, latent_frames: int = 432) -> ModelPreset:
    """Our preset for an official DiT configuration: `paper-dit-official` for the release's, else the same
    layout at the given size (tests convert small official state dicts)."""
    p = model_preset(OFFICIAL_PRESET)
    if {k: cfg[k] for k in DIT_V1 if k != "global_cond_dim"} == {k: v for k, v in DIT_V1.items()
                                                                  if k != "global_cond_dim"}:
        return p
    backbone = DiTConfig(**dit_config_kwargs(**cfg))
    return dataclasses.replace(p, name=f"{OFFICIAL_PRESET}-{cfg['embed_dim']}x{cfg['depth']}", backbone=backbone,
                               latent_shape=(cfg["io_channels"], latent_frames), cond_shape=(1, cfg["cond_token_dim"]))


def build_official(preset: ModelPreset, kind: str, device="meta"):
    """An empty (meta) teacher or student of `preset`, for its keys and shapes (or real, device="cpu")."""
    with torch.device(device):
        net = build_backbone(preset)
        model = Precond(net, preset.sigma_data) if kind == "teacher" else CTMStudent(
            net, preset.sigma_data, **preset.student_options())
    model.latent_shape, model.cond_shape, model.preset = preset.latent_shape, preset.cond_shape, preset
    return model


def convert_dit(obj, kind: str, *, num_heads: int | None = None, latent_frames: int = 432,
                log=print) -> tuple[dict[str, torch.Tensor], ModelPreset, dict]:
    """An official student (EMA) or teacher state dict -> (our state dict, preset, report)."""
    if kind not in ("student", "teacher"):
        raise ValueError(f"kind must be 'student' or 'teacher', got {kind!r}")
    sd = _unwrap(obj)
    clap_keys = [k for k in sd if k.startswith("text_encoder.")]
    if any(k.startswith("dit.") for k in sd):
        sd = _sub(sd, "dit.")
    if "transformer.project_in.weight" not in sd:
        raise ConversionError("not a SoundCTM-DiT state dict (no transformer.project_in.weight under 'dit.')")
    cfg = infer_dit_config(sd, num_heads)
    if cfg["cond_token_dim"] != 512 and cfg["embed_dim"] == DIT_V1["embed_dim"]:
        raise ConversionError(
            f"this checkpoint conditions on {cfg['cond_token_dim']}-d tokens: the release's v2 variant (CLAP text "
            "branch without its projection), which our LAION-CLAP text encoder does not produce; convert the "
            "ICLR variant ac_v1_iclr (512-d CLAP embedding) instead")
    teacher = kind == "teacher"
    has_global = any(k.startswith("to_global_embed.") for k in sd)
    if teacher != has_global:  # the official teacher is built with global_cond_dim 1536, the student without
        hint = "a teacher (it has to_global_embed)" if has_global else "a student (no to_global_embed)"
        raise ConversionError(f"this looks like {hint}; convert it as such")
    check_layout(sd, official_dit_shapes(**cfg, teacher=teacher), f"official SoundCTM-DiT {kind}")
    tensors, dropped = apply_keymap(sd, DIT_KEYMAP)
    preset = official_preset(cfg, latent_frames)
    _match_module(tensors, build_official(preset, kind), f"the converted {kind}")
    report = {"config": cfg, "dropped": sorted(set(dropped.values())), "dropped_keys": len(dropped),
              "ignored_clap_keys": len(clap_keys), "tensors": len(tensors)}
    log(f"[convert] {kind}: {len(tensors)} tensors mapped, {len(dropped)} dropped "
        f"({'; '.join(report['dropped'])})" + (f", {len(clap_keys)} CLAP keys left for `convert clap`"
                                               if clap_keys else ""))
    return tensors, preset, report


def _jsonable(obj):
    """JSON-able; a dataclass's fields with metadata "export": False (a preset's training recipe) left out."""
    if dataclasses.is_dataclass(obj):
        skip = {f.name for f in dataclasses.fields(obj) if not f.metadata.get("export", True)}
        obj = {k: v for k, v in dataclasses.asdict(obj).items() if k not in skip}
    return json.loads(json.dumps(obj, default=list))


def write_export(path: str | Path, tensors: dict[str, torch.Tensor], kind: str, preset: ModelPreset,
                 source: dict) -> Path:
    """Our export format (`soundctm.train.checkpoint.load_export` rebuilds the model from it)."""
    meta = {"format": "soundctm-export", "format_version": EXPORT_FORMAT, "kind": kind, "preset": _jsonable(preset),
            "sigma_data": float(preset.sigma_data), "train_config": {},
            "extra": {"converted_from": source, "conditioning": {"text_encoder": "laion-clap", "mode": "pooled"}}}
    if kind == "student":
        meta["student"] = {"sigma_min": float(SIGMA_MIN)}
    return save_safetensors(path, tensors, meta)


# ------------------------------------------------------------------------------------------------ VAE


def _dac_config_from_shapes(sd: dict[str, torch.Tensor]) -> dict:
    """GaussianDAC's constructor arguments read off its weights (kernel = 2 x stride)."""
    def w(k):
        return sd.get(k + ".weight_v", sd.get(k + ".weight"))

    enc_rates, i = [], 1
    while w(f"encoder.block.{i}.block.4") is not None:
        enc_rates.append(w(f"encoder.block.{i}.block.4").shape[-1] // 2)
        i += 1
    dec_rates, i = [], 1
    while w(f"decoder.model.{i}.block.1") is not None:
        dec_rates.append(w(f"decoder.model.{i}.block.1").shape[-1] // 2)
        i += 1
    if w("encoder.block.0") is None or w("decoder.model.0") is None or w("post_conv") is None:
        raise ConversionError("not a GaussianDAC state dict (no encoder.block.0 / decoder.model.0 / post_conv)")
    return {"encoder_dim": int(w("encoder.block.0").shape[0]), "encoder_rates": tuple(enc_rates),
            "latent_dim": int(w("post_conv").shape[0]), "decoder_dim": int(w("decoder.model.0").shape[0]),
            "decoder_rates": tuple(dec_rates)}


def convert_vae(obj, z_stats, *, log=print) -> tuple[AudioAutoencoder, dict]:
    """The released GaussianDAC (audiotools' {"state_dict", "metadata"}) and its latent statistics
    ({"z_mean", "z_std"}) -> our `AudioAutoencoder` with `latent_convs`, normalisation fitted."""
    meta = obj.get("metadata", {}) if isinstance(obj, dict) else {}
    kwargs = dict(meta.get("kwargs", {})) if isinstance(meta, dict) else {}
    sd = _unwrap(obj)
    if kwargs.get("double_z", True) is not True:
        raise ConversionError("a GaussianDAC without double_z has no posterior variance; not supported")
    # weight norm removed before saving (plain .weight): restore (g, v) exactly
    wn = {}
    for k, v in sd.items():
        if k.endswith(".weight") and v.ndim == 3:
            wn[k[: -len("weight")] + "weight_g"], wn[k[: -len("weight")] + "weight_v"] = weight_norm_split(v)
        else:
            wn[k] = v
    sd = wn
    cfg = _dac_config_from_shapes(sd)
    for name, got in cfg.items():
        want = kwargs.get(name)
        if want is not None and (tuple(want) if isinstance(got, tuple) else int(want)) != got:
            raise ConversionError(f"GaussianDAC metadata says {name}={want} but the weights say {got}")
    if any(r % 2 for r in cfg["decoder_rates"]):
        raise ConversionError(f"odd decoder strides {cfg['decoder_rates']}: GaussianDAC's transposed convolutions "
                              "have no output padding there and ours do; not supported")
    check_layout(sd, official_dac_shapes(**cfg), "official GaussianDAC")
    tensors, _ = apply_keymap(sd, DAC_KEYMAP)
    vcfg = VAEConfig(encoder_dim=cfg["encoder_dim"], encoder_rates=cfg["encoder_rates"],
                     decoder_dim=cfg["decoder_dim"], decoder_rates=cfg["decoder_rates"],
                     latent_channels=cfg["latent_dim"], sample_rate=int(kwargs.get("sample_rate", 44100)),
                     architecture="dac", latent_convs=True)
    with torch.random.fork_rng(devices=[]):
        vae = AudioAutoencoder(vcfg)
    stats = _unwrap(z_stats) if not (isinstance(z_stats, dict) and "z_mean" in z_stats) else z_stats
    if "z_mean" not in stats or "z_std" not in stats:
        raise ConversionError(f"the latent statistics need z_mean and z_std, got {sorted(stats)}")
    c = cfg["latent_dim"]
    z_mean, z_std = stats["z_mean"].reshape(-1).float(), stats["z_std"].reshape(-1).float()
    if z_mean.numel() != c or z_std.numel() != c:
        raise ConversionError(f"z_mean / z_std have {z_mean.numel()} / {z_std.numel()} entries; "
                              f"the VAE has {c} channels")
    if not bool((z_std > 0).all()):
        raise ConversionError("z_std must be positive")
    tensors.update({"latent_mean": z_mean, "latent_std": z_std, "sigma_data": torch.tensor(SIGMA_DATA),
                    "normalisation_fitted": torch.tensor(True)})
    own = vae.state_dict()
    _match_module(tensors, vae, "the converted GaussianDAC")
    vae.load_state_dict({k: tensors[k].to(own[k].dtype) for k in own}, strict=True)
    log(f"[convert] vae: {len(tensors)} tensors, {vcfg.encoder_rates} / {vcfg.decoder_rates}, "
        f"{vcfg.latent_channels} latent channels, {vcfg.sample_rate} Hz")
    return vae.eval(), {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}}


# ------------------------------------------------------------------------------------------------ CLAP


def convert_clap(obj, *, log=print, **shape_kw) -> tuple[dict[str, torch.Tensor], dict]:
    """LAION-CLAP 630k-audioset-best (or the CLAP inside a SoundCTM student file) -> the laion-clap CLAP
    module's state dict (position ids dropped), checked against the official layout."""
    sd = _unwrap(obj)
    if any(k.startswith("text_encoder.model.") for k in sd):
        sd = _sub(sd, "text_encoder.model.")
    expected = official_clap_shapes(**shape_kw)
    check_layout(sd, expected, "official LAION-CLAP (HTSAT-tiny, RoBERTa, no fusion)",
                 optional=("text_branch.embeddings.position_ids",))
    tensors, dropped = apply_keymap(sd, CLAP_KEYMAP)
    log(f"[convert] clap: {len(tensors)} tensors" + (f", dropped {_few(dropped)}" if dropped else ""))
    return tensors, {"dropped": sorted(dropped)}


# ------------------------------------------------------------------------------------------------ CLI


def _source(path: str | None, role: str, release: Path) -> Path:
    p = Path(path).expanduser() if path else release / RELEASE_FILES[role]
    if not p.is_file():
        raise MissingAssetsError([(f"the released {role} file", str(p))],
                                 hint="Pass its path, or put the release under --release (default "
                                      f"{release_dir()}) in its own layout: {', '.join(RELEASE_FILES.values())}.")
    return p


def _source_info(path: Path) -> dict:
    return {"file": path.name, "sha256": sha256_file(path), "release": "koichisaito/soundctm_dit"}


def _dit(args, kind: str) -> Path:
    if kind == "teacher" and not args.src:
        raise MissingAssetsError([("the SoundCTM-DiT teacher state dict (the official training's teacher_model_path)",
                                   "pass its path: soundctm convert teacher PATH")])
    src = _source(args.src, "student", args.release) if kind == "student" else Path(args.src).expanduser()
    if not src.is_file():
        raise MissingAssetsError([("the SoundCTM-DiT teacher state dict", str(src))])
    tensors, preset, _ = convert_dit(read_official(src), kind, num_heads=args.heads)
    out = Path(args.out) if args.out else default_outputs()[kind]
    write_export(out, tensors, kind, preset, _source_info(src))
    print(f"[convert] {kind} -> {out} (preset {preset.name})")
    return out


def _vae(args) -> Path:
    src = _source(args.src, "vae", args.release)
    stats = _source(args.stats, "z_stats", args.release)
    vae, _ = convert_vae(read_official(src), read_official(stats))
    out = Path(args.out) if args.out else default_outputs()["vae"]
    vae.save(out, extra_metadata={"converted_from": {**_source_info(src), "z_stats": _source_info(stats)}})
    print(f"[convert] vae -> {out}")
    return out


def _clap(args) -> Path:
    src = _source(args.src, "clap", args.release)
    tensors, info = convert_clap(read_official(src))
    out = Path(args.out) if args.out else default_outputs()["clap"]
    save_safetensors(out, tensors, {"kind": "laion-clap", "version": "630k-audioset-best/HTSAT-tiny/roberta/no-fusion",
                                    "converted_from": _source_info(src), **info})
    print(f"[convert] clap -> {out}  (use it with SOUNDCTM_CLAP_WEIGHTS={out})")
    return out


def _all(args) -> int:
    found = {r: args.release / f for r, f in RELEASE_FILES.items()}
    missing = [(f"the released {r} file", str(p)) for r, p in found.items() if not p.is_file()]
    if missing:
        raise MissingAssetsError(missing, hint=f"put the release under {args.release} in its own layout")
    ns = dict(release=args.release, out=None, heads=args.heads, stats=None)
    _dit(argparse.Namespace(src=None, **ns), "student")
    _vae(argparse.Namespace(src=None, **ns))
    _clap(argparse.Namespace(src=None, **ns))
    if args.teacher:
        _dit(argparse.Namespace(src=args.teacher, **ns), "teacher")
    return 0


def main(argv=None) -> int:
    """`soundctm convert`: bad input -> one line on stderr, exit status 2."""
    return run("soundctm convert", _main, argv)


def _main(argv) -> int:
    ap = Parser(prog="soundctm convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True, metavar="{student,teacher,vae,clap,all}",
                            parser_class=functools.partial(Parser, threads_default=argparse.SUPPRESS))

    def common(p, src_help, out_role):
        p.add_argument("src", nargs="?", default=None, help=src_help)
        p.add_argument("--out", default=None, help=f"output .safetensors (default {default_outputs()[out_role]})")
        p.add_argument("--release", type=Path, default=release_dir(),
                       help="the release in its own layout (default: %(default)s)")

    p = sub.add_parser("student", help="SoundCTM-DiT-1B student (EMA) -> export of preset paper-dit-official")
    common(p, f"the EMA state dict (default: RELEASE/{RELEASE_FILES['student']})", "student")
    p.add_argument("--heads", type=int, default=None, help="attention heads (default: width / 64, the release's)")
    p = sub.add_parser("teacher", help="SoundCTM-DiT-1B teacher -> export of preset paper-dit-official")
    common(p, "the teacher state dict (required: the release has no fixed name for it)", "teacher")
    p.add_argument("--heads", type=int, default=None, help="attention heads (default: width / 64, the release's)")
    p = sub.add_parser("vae", help="GaussianDAC VAE + latent statistics -> AudioAutoencoder (latent_convs)")
    common(p, f"audiotools weights.pth (default: RELEASE/{RELEASE_FILES['vae']})", "vae")
    p.add_argument("--stats", default=None, help=f"z_mean / z_std file (default: RELEASE/{RELEASE_FILES['z_stats']})")
    p = sub.add_parser("clap", help="LAION-CLAP 630k-audioset-best -> the laion-clap CLAP state dict")
    common(p, f"630k-audioset-best.pt or a SoundCTM student file (default: RELEASE/{RELEASE_FILES['clap']})", "clap")
    p = sub.add_parser("all", help="student, VAE and CLAP from --release (and the teacher with --teacher)")
    p.add_argument("--release", type=Path, default=release_dir(), help="the release directory (default: %(default)s)")
    p.add_argument("--teacher", default=None, help="the teacher state dict, if you have it")
    p.add_argument("--heads", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    outs = ([args.out] if args.out else [default_outputs()[args.what]]) if args.what != "all" else [
        default_outputs()[r] for r in ("student", "vae", "clap")]
    for out in outs:  # every output can be written, before anything is read or converted
        out_file(out)
    try:
        if args.what in ("student", "teacher"):
            _dit(args, args.what)
        elif args.what == "vae":
            _vae(args)
        elif args.what == "clap":
            _clap(args)
        else:
            _all(args)
    except (MissingAssetsError, ConversionError) as e:
        raise CLIError(f"{args.what}: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
