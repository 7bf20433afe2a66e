"""`soundctm build-components`: the tiny tier's corpus, VAE and CLAP text encoder.

Builds (or reuses) the procedural corpus, trains the tiny VAE and fits its latent normalisation
(sigma_data = 0.5) on the train split, trains the tiny CLAP, and caches both under
`<cache>/tiny/` keyed by every setting that affects them (`--force` rebuilds). Then it measures

  - VAE reconstruction on the test split (multi-scale STFT distance, multi-scale mel distance,
    SI-SDR) beside the silence and 1 kHz low-pass baselines;
  - text -> audio retrieval recall@1 / @5 of the tiny CLAP on the test split (all five captions
    of each clip as queries) beside chance (k / N);

and prints and writes them, with provenance, to `results/tiny/components.json`.

Library use: `get_tiny_components(cache=None) -> (CorpusInfo, AudioAutoencoder, TinyCLAP)`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from soundctm.cmdline import Parser, nonnegative_int, out_file, positive_int, run
from soundctm.data.corpus import caption_vocabulary, tiny_corpus
from soundctm.io import file_lock, load_safetensors, settings_hash, write_json
from soundctm.nn.text import TinyAudioConfig, TinyCLAP, TinyTextConfig, build_vocabulary, normalise_caption
from soundctm.nn.vae import AudioAutoencoder, VAEConfig, vae_config
from soundctm.paths import committed_tiny_dir, results_root, tiny_components_dir
from soundctm.provenance import provenance
from soundctm.train.config import TRAIN_THREADS, pinned_threads
from soundctm.train.text import TextTrainConfig, retrieval_recall, train_clap
from soundctm.train.vae import VAETrainConfig, evaluate_reconstruction, train_vae, vae_train_config

__all__ = [
    "TinyComponentsConfig",
    "TINY_SIGMA_DATA",
    "components_dir",
    "load_split",
    "get_tiny_components",
    "adopt_committed",
    "component_keys",
    "evaluate_components",
    "main",
]

FORMAT_VERSION = 1
TINY_SIGMA_DATA = 0.5  # latents normalised per channel to sigma_data (DESIGN: DiT preset sigma_data = 0.5)


@dataclass(frozen=True)
class TinyComponentsConfig:
    """Every setting that determines the tiny components (part of their cache keys)."""

    seed: int = 0
    # the tiny VAE design: "tiny" (= "tiny-stft", STFT encoder + iSTFT decoder); `with_vae("tiny-dac")`
    # selects the original waveform DAC design with its own training recipe
    vae: VAEConfig = field(default_factory=lambda: vae_config("tiny"))
    vae_train: VAETrainConfig = vae_train_config("tiny")
    sigma_data: float = TINY_SIGMA_DATA
    text: TinyTextConfig = TinyTextConfig()
    audio: TinyAudioConfig = TinyAudioConfig()
    clap_train: TextTrainConfig = TextTrainConfig()

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "vae": self.vae.to_dict(),
            "vae_train": self.vae_train.to_dict(),
            "sigma_data": self.sigma_data,
            "text": dataclasses.asdict(self.text),
            "audio": dataclasses.asdict(self.audio),
            "clap_train": self.clap_train.to_dict(),
        }

    def with_vae(self, name: str) -> TinyComponentsConfig:
        """The same settings with the named tiny VAE design: architecture `vae_config(name)` and
        its training recipe `vae_train_config(name)` (seed kept)."""
        return dataclasses.replace(
            self, vae=vae_config(name), vae_train=dataclasses.replace(vae_train_config(name), seed=self.seed)
        )

    def with_seed(self, seed: int) -> TinyComponentsConfig:
        return dataclasses.replace(
            self,
            seed=seed,
            vae_train=dataclasses.replace(self.vae_train, seed=seed),
            clap_train=dataclasses.replace(self.clap_train, seed=seed),
        )


_key = settings_hash


components_dir = tiny_components_dir  # `<cache>/tiny/components`


def load_split(corpus, split: str) -> tuple[list[str], torch.Tensor, list[list[str]]]:
    """All clips of a corpus split: (youtube_ids, audio [N, 1, L], captions per clip).

    split: "train" (five paraphrases per clip) or "test" (the five captions of test_5cap.csv).
    """
    csv_split = {"train": "train", "test": "test_5cap", "val": "val"}[split]
    ds = corpus.dataset(csv_split, verbose=False)
    ids = ds.clip_ids
    caps = ds.captions_by_clip()
    audio = torch.stack([ds.load_clip(y) for y in ids])
    return ids, audio, [caps[y] for y in ids]


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _vocabulary(train_captions: list[list[str]]) -> list[str]:
    words = {w for w in caption_vocabulary() for w in normalise_caption(w)}
    words |= set(build_vocabulary(c for caps in train_captions for c in caps))
    return sorted(words)


def get_tiny_components(
    cache: str | Path | None = None,
    *,
    config: TinyComponentsConfig = TinyComponentsConfig(),
    force: bool = False,
    progress: bool = True,
    log=print,
    committed: str | Path | None = None,
) -> tuple:
    """Build or load the tiny tier's components: (CorpusInfo, AudioAutoencoder, TinyCLAP).

    The VAE (with fitted latent normalisation) and the CLAP are cached under
    `components_dir(cache)`; a cached file is reused only if its key (corpus identity + every
    setting) matches. A missing one is taken from the committed files (`committed`, default
    `soundctm/assets/tiny/`, the package's tiny models) when the committed file's recorded key is
    the same key (the same corpus and settings: what training here would reproduce bit for bit),
    and trained otherwise. `force=True` retrains both. Both models are returned in eval mode with
    gradients disabled.
    """

    t_start = time.time()
    corpus = tiny_corpus(cache, progress=progress)
    out = components_dir(cache)
    out.mkdir(parents=True, exist_ok=True)
    with file_lock(out / ".lock"):  # one builder at a time; a second process then loads what the first built
        return _components_locked(corpus, out, config, force, progress, log, t_start,
                                  Path(committed) if committed is not None else committed_tiny_dir())


def component_keys(corpus_id: str, config: TinyComponentsConfig = TinyComponentsConfig()) -> tuple[str, str]:
    """(VAE key, CLAP key): the cache keys of the tiny components built on corpus `corpus_id` with
    `config` (recorded in each file's metadata; a file is reused only under its own key)."""
    cfg = config.to_dict()
    vae_key = _key(
        {
            "v": FORMAT_VERSION,
            "corpus": corpus_id,
            "seed": cfg["seed"],
            "vae": cfg["vae"],
            "vae_train": cfg["vae_train"],
            "sigma_data": cfg["sigma_data"],
        }
    )
    clap_key = _key(
        {
            "v": FORMAT_VERSION,
            "corpus": corpus_id,
            "seed": cfg["seed"],
            "text": cfg["text"],
            "audio": cfg["audio"],
            "clap_train": cfg["clap_train"],
        }
    )
    return vae_key, clap_key


def adopt_committed(committed: Path, dest: Path, key: str) -> bool:
    """Copy the committed component file `committed` to `dest` (atomically) if its recorded key is
    `key`; False (nothing written) if it is absent, unreadable or was built with other settings."""
    if _recorded_key(committed) != key:
        return False
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    shutil.copyfile(committed, tmp)
    os.replace(tmp, dest)
    return True


def _components_locked(corpus, out: Path, config: TinyComponentsConfig, force: bool, progress: bool, log,
                       t_start: float, committed: Path) -> tuple:
    cfg = config.to_dict()
    vae_key, clap_key = component_keys(corpus.corpus_id, config)
    vae_path, clap_path, build_path = out / "vae.safetensors", out / "clap.safetensors", out / "build.json"
    build = {}
    if build_path.exists() and not force:
        try:
            build = json.loads(build_path.read_text())
        except (OSError, json.JSONDecodeError):
            build = {}

    train = None

    def train_split():
        nonlocal train
        if train is None:
            train = load_split(corpus, "train")
        return train

    adopted = []
    for name, path, key in (("vae", vae_path, vae_key), ("clap", clap_path, clap_key)):
        if not force and _recorded_key(path) != key and adopt_committed(committed / path.name, path, key):
            log(f"using the committed {name} {committed / path.name} (built with these settings on this corpus)")
            build[name] = {"key": key, "from": str(committed / path.name)}
            adopted.append(name)
    vae = _load_if_current(AudioAutoencoder, vae_path, vae_key, force)
    if vae is None:
        _, audio, _ = train_split()
        log(f"training tiny VAE on {len(audio)} clips ({config.vae_train.steps} steps)")
        _seed_everything(config.seed)
        vae = AudioAutoencoder(config.vae)
        t0 = time.time()
        with pinned_threads(TRAIN_THREADS):  # the key names one set of weights: one thread count
            hist = train_vae(vae, audio, config.vae_train, progress=progress)
            t1 = time.time()
            vae.fit_normalisation_from_audio(
                (audio[i : i + 16] for i in range(0, len(audio), 16)), config.sigma_data
            )
        build["vae"] = {
            "key": vae_key,
            "train_seconds": t1 - t0,
            "train_cpu_seconds": hist["cpu_seconds"],
            "normalisation_seconds": time.time() - t1,
            "loss_first": hist["loss"][0],
            "loss_last": hist["loss"][-1],
            "mel_first": hist["mel"][0],
            "mel_last": hist["mel"][-1],
            "kl_last": hist["kl"][-1],
        }
        vae.save(vae_path, extra_metadata={"key": vae_key, "corpus": corpus.corpus_id, "settings": cfg})
        build["vae"]["checksum"] = vae.checksum()
    clap = _load_if_current(TinyCLAP, clap_path, clap_key, force)
    if clap is None:
        _, audio, caps = train_split()
        log(f"training tiny CLAP on {len(audio)} clips ({config.clap_train.steps} steps)")
        _seed_everything(config.seed)
        clap = TinyCLAP(_vocabulary(caps), config.text, config.audio)
        with pinned_threads(TRAIN_THREADS):
            hist = train_clap(clap, audio, caps, config.clap_train, progress=progress)
        build["clap"] = {
            "key": clap_key,
            "train_seconds": hist["seconds"],
            "loss_first": hist["loss"][0],
            "loss_last": hist["loss"][-1],
            "vocabulary_size": len(clap.vocabulary),
        }
        clap.save(clap_path, extra_metadata={"key": clap_key, "corpus": corpus.corpus_id, "settings": cfg})
        build["clap"]["checksum"] = clap.checksum()
    for name, model in (("vae", vae), ("clap", clap)):
        if name in adopted:
            build[name]["checksum"] = model.checksum()
    if train is not None or adopted:  # something was (re)built or taken from the committed files: record how
        build.update(
            {
                "format_version": FORMAT_VERSION,
                "corpus": corpus.corpus_id,
                "settings": cfg,
                "wall_seconds": time.time() - t_start,
            }
        )

        write_json(build_path, build)
    vae.eval().requires_grad_(False)
    clap.freeze()
    return corpus, vae, clap


def _recorded_key(path: Path) -> str | None:
    """The settings key a component file records; None if absent or unreadable (truncated: rebuild it)."""
    if not path.exists():
        return None
    try:
        _, meta = load_safetensors(path)
    except Exception:
        return None
    return meta.get("extra", {}).get("key")


def _load_if_current(cls, path: Path, key: str, force: bool):
    if force or _recorded_key(path) != key:
        return None
    return cls.load(path)


@torch.no_grad()
def evaluate_components(corpus, vae: AudioAutoencoder, clap: TinyCLAP) -> dict:
    """Test-split VAE reconstruction (with baselines) and CLAP text->audio retrieval (with chance)."""
    ids, audio, caps = load_split(corpus, "test")
    rec = evaluate_reconstruction(vae, audio)
    ret = retrieval_recall(clap, audio, caps, ks=(1, 5))
    return {"vae_reconstruction": rec, "clap_retrieval": ret, "n_test_clips": len(ids)}


def _default_out() -> Path:
    return results_root() / "tiny" / "components.json"


def _fmt(x, nd=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def _report_text(res: dict) -> str:
    c = res["corpus"]
    lines = [
        f"corpus {c['corpus_id']}: train {c['train_clips']} clips / {c['train_captions']} captions, "
        f"test {c['test_clips']} clips / {c['test_captions']} captions",
        "",
        "VAE reconstruction on the test split (mean over clips):",
        f"  {'system':16s} {'STFT dist (lower)':>18s} {'mel dist (lower)':>17s} {'SI-SDR dB (higher)':>19s}",
    ]
    for name, m in res["vae_reconstruction"].items():
        lines.append(
            f"  {name:16s} {_fmt(m['stft_distance']['mean']):>18s} {_fmt(m['mel_distance']['mean']):>17s} "
            f"{_fmt(m['si_sdr_db']['mean'], 2):>19s}"
        )
    r = res["clap_retrieval"]
    lines += [
        "",
        f"tiny CLAP text->audio retrieval on the test split "
        f"({r['n_queries']} queries, {r['n_clips']} clips):",
        f"  recall@1 {r['recall@1']:.3f} (chance {r['chance@1']:.3f})   "
        f"recall@5 {r['recall@5']:.3f} (chance {r['chance@5']:.3f})   mean rank {r['mean_rank']:.1f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`soundctm build-components`: bad input -> one line on stderr, exit status 2."""
    return run("soundctm build-components", _main, argv)


def _main(argv: list[str] | None = None) -> int:
    p = Parser(prog="soundctm build-components", description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=None, help="cache root (default: $SOUNDCTM_CACHE or ~/.cache/soundctm)")
    p.add_argument("--out", default=None, help="results JSON (default: results/tiny/components.json)")
    p.add_argument("--force", action="store_true",
                   help="retrain the VAE and CLAP even if cached or committed with these settings")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument(
        "--vae",
        default="tiny",
        choices=("tiny", "tiny-stft", "tiny-dac"),
        help="tiny VAE design (default tiny = tiny-stft; tiny-dac is the original waveform VAE)",
    )
    p.add_argument("--vae-steps", type=positive_int, default=None)
    p.add_argument("--clap-steps", type=positive_int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    args = p.parse_args(argv)
    out_file(args.out) if args.out else out_file(_default_out(), "the results file")
    cfg = TinyComponentsConfig().with_seed(args.seed).with_vae(args.vae)
    if args.vae_steps is not None:
        cfg = dataclasses.replace(cfg, vae_train=dataclasses.replace(cfg.vae_train, steps=args.vae_steps))
    if args.clap_steps is not None:
        cfg = dataclasses.replace(cfg, clap_train=dataclasses.replace(cfg.clap_train, steps=args.clap_steps))
    print("resolved configuration:")
    for k, v in cfg.to_dict().items():
        print(f"  {k}: {json.dumps(v)}")
    if args.dry_run:
        return 0

    t0 = time.time()
    corpus, vae, clap = get_tiny_components(
        args.cache, config=cfg, force=args.force, progress=not args.no_progress
    )
    ev = evaluate_components(corpus, vae, clap)
    counts = corpus.counts
    n_train = counts.get("train", corpus.n_train)
    build_path = components_dir(args.cache) / "build.json"
    build = json.loads(build_path.read_text()) if build_path.exists() else {}
    res = {
        "tier": "tiny",
        "corpus": {
            "corpus_id": corpus.corpus_id,
            "root": str(corpus.root),
            "train_clips": n_train,
            "train_captions": counts.get("train_rows", n_train),
            "val_clips": counts.get("val", corpus.n_val),
            "test_clips": ev["n_test_clips"],
            "test_captions": ev["clap_retrieval"]["n_queries"],
            "sample_rate": corpus.sample_rate,
            "clip_samples": corpus.clip_samples,
        },
        "vae": {
            "config": vae.config.to_dict(),
            "parameters": sum(p.numel() for p in vae.parameters()),
            "sigma_data": float(vae.sigma_data),
            "checksum": vae.checksum(),
            "latent_shape": [vae.latent_channels, corpus.clip_samples // vae.hop],
        },
        "clap": {
            "parameters": sum(p.numel() for p in clap.parameters()),
            "vocabulary_size": len(clap.vocabulary),
            "checksum": clap.checksum(),
        },
        "vae_reconstruction": ev["vae_reconstruction"],
        "clap_retrieval": ev["clap_retrieval"],
        "build": build,
        "settings": cfg.to_dict(),
        "provenance": provenance(
            mark_dirty=False,
            device="cpu",
            torch_threads=torch.get_num_threads(),
            seed=args.seed,
            wall_seconds=time.time() - t0,
            command="soundctm build-components " + " ".join(argv if argv is not None else sys.argv[1:]),
            cache=str(components_dir(args.cache)),
        ),
    }
    text = _report_text(res)
    print(text)

    out = Path(args.out) if args.out else _default_out()
    write_json(out, _json_clean(res))
    print(f"\nwrote {out}")
    return 0


def _json_clean(obj):
    """NaN / inf -> None so the JSON stays standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    return obj


if __name__ == "__main__":
    sys.exit(main())
