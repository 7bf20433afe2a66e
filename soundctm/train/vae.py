"""Training and evaluation of the waveform VAE (App. C.2).

Loss (per App. C.2, following DAC): multi-scale log-mel L1 (weight 15.0) + KL to N(0, I)
(weight 1e-5); optional spectral convergence, multi-resolution STFT magnitude (log + linear L1)
and, for the "stft" architecture, a direct L1 on the decoder's predicted log magnitude.
`vae_train_config(name)` gives the recipe of each tiny design ("tiny" = "tiny-stft", "tiny-dac").
The paper also uses a feature-matching (2.0) and an
adversarial (1.0) term; they need a discriminator and are not part of this module, so asking for
them is an error rather than a silent no-op.

Evaluation helpers compare a reconstruction with its reference per clip: multi-scale STFT
distance, multi-scale mel distance, SI-SDR; `baseline_silence` / `baseline_lowpass` give the
trivial references those numbers are read against.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.signal import butter, sosfiltfilt
from tqdm.auto import tqdm

from soundctm.audio import log_mel, mel_filterbank, stft_magnitude
from soundctm.nn.vae import AudioAutoencoder, stft_same
from soundctm.train.config import lr_at

__all__ = [
    "VAETrainConfig",
    "VAE_TRAIN_PRESETS",
    "vae_train_config",
    "mel_filterbank",
    "log_mel",
    "multiscale_mel_loss",
    "spectral_convergence_loss",
    "multiresolution_stft_loss",
    "kl_loss",
    "vae_loss",
    "train_vae",
    "multiscale_stft_distance",
    "multiscale_mel_distance",
    "si_sdr",
    "baseline_silence",
    "baseline_lowpass",
    "reconstruct",
    "evaluate_reconstruction",
]

# DAC's multi-scale mel loss: window lengths and mel bins per scale (hop = window / 4).
DAC_MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
DAC_MEL_BINS = (5, 10, 20, 40, 80, 160, 320)


@dataclass(frozen=True)
class VAETrainConfig:
    """Settings of a VAE training run (defaults: the tiny tier, a few minutes on one CPU thread)."""

    steps: int = 480
    batch_size: int = 8
    crop_samples: int = 8192
    lr: float = 1e-3
    lr_final_fraction: float = 0.05  # cosine decay from lr to lr * this
    warmup_steps: int = 20
    betas: tuple[float, float] = (0.8, 0.99)  # DAC's AdamW betas
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    mel_weight: float = 15.0  # App. C.2
    kl_weight: float = 1e-5  # App. C.2
    sc_weight: float = 0.0  # optional spectral convergence (not in the paper)
    stft_weight: float = 0.0  # optional multi-resolution STFT magnitude loss (not in the paper)
    stft_windows: tuple[int, ...] = (512, 1024, 2048)
    # "stft" VAEs only: L1 between the decoder's predicted log magnitude and the input's own
    # log(|STFT| + spectrum_eps) in the decoder's framing (a direct target for the iSTFT head)
    spectrum_weight: float = 0.0
    spectrum_eps: float = 1e-3
    adv_weight: float = 0.0  # App. C.2 uses 1.0 (needs a discriminator; not implemented here)
    fm_weight: float = 0.0  # App. C.2 uses 2.0 (needs a discriminator; not implemented here)
    mel_windows: tuple[int, ...] = DAC_MEL_WINDOWS
    mel_bins: tuple[int, ...] = DAC_MEL_BINS
    seed: int = 0

    def __post_init__(self):
        for name in ("betas", "mel_windows", "mel_bins", "stft_windows"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.mel_windows) != len(self.mel_bins):
            raise ValueError("mel_windows and mel_bins must have the same length")
        if self.adv_weight or self.fm_weight:
            raise NotImplementedError(
                "adversarial / feature-matching terms need a discriminator, which this trainer does "
                "not provide; set adv_weight=fm_weight=0"
            )

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        # unused terms: keep the dict (cache keys) of settings that predate them
        if not self.stft_weight:
            d.pop("stft_windows")
            d.pop("stft_weight")
        if not self.spectrum_weight:
            d.pop("spectrum_weight")
            d.pop("spectrum_eps")
        return d


# Training settings per tiny VAE design (`soundctm.nn.vae.VAE_PRESETS`): "tiny-dac" is the
# original tiny recipe (the dataclass defaults), "tiny-stft" (= "tiny") the STFT / iSTFT VAE's.
VAE_TRAIN_PRESETS: dict[str, VAETrainConfig] = {
    "tiny-dac": VAETrainConfig(),
    # 9600 steps x 16 crops of 0.5 s, multi-scale mel over 4 scales: about 1 600 CPU s on one thread.
    # Test split (docs/tiny-results.md, "The tiny VAE"): tiny-evt mAP 0.95 on reconstructions vs 0.997 on the
    # originals; 2400 steps (388 CPU s) gave 0.78, short of the codec target of 0.9x.
    "tiny-stft": VAETrainConfig(
        steps=9600,
        batch_size=16,
        crop_samples=8192,
        lr=1e-3,
        mel_windows=(64, 256, 1024, 2048),
        mel_bins=(10, 40, 160, 320),
    ),
}
VAE_TRAIN_PRESETS["tiny"] = VAE_TRAIN_PRESETS["tiny-stft"]


def vae_train_config(name: str) -> VAETrainConfig:
    """Named training preset matching a VAE architecture preset: "tiny" (= "tiny-stft") or "tiny-dac"."""
    try:
        return VAE_TRAIN_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown VAE training preset {name!r}; expected one of {sorted(VAE_TRAIN_PRESETS)}"
        ) from None


# ----------------------------------------------------------------------------------------------
# spectral front-ends


# ----------------------------------------------------------------------------------------------
# losses (per example: [B])


def multiscale_mel_loss(
    x_hat: torch.Tensor, x: torch.Tensor, sample_rate: int, windows=DAC_MEL_WINDOWS, bins=DAC_MEL_BINS
) -> torch.Tensor:
    """Sum over scales of the L1 distance of log10 mel magnitudes (DAC). x_hat, x: [B, 1, N] -> [B]."""
    total = x.new_zeros(x.shape[0])
    for w, m in zip(windows, bins):
        a = log_mel(x_hat, sample_rate, w, m)
        b = log_mel(x, sample_rate, w, m)
        total = total + (a - b).abs().mean(dim=(1, 2))
    return total


def spectral_convergence_loss(
    x_hat: torch.Tensor, x: torch.Tensor, windows=(2048, 512, 128), eps: float = 1e-7
) -> torch.Tensor:
    """Mean over scales of ||S(x) - S(x_hat)||_F / ||S(x)||_F. [B, 1, N] -> [B]."""
    total = x.new_zeros(x.shape[0])
    for w in windows:
        a = stft_magnitude(x_hat, w, w // 4)
        b = stft_magnitude(x, w, w // 4)
        total = total + (a - b).flatten(1).norm(dim=1) / (b.flatten(1).norm(dim=1) + eps)
    return total / len(windows)


def multiresolution_stft_loss(
    x_hat: torch.Tensor, x: torch.Tensor, windows=(512, 1024, 2048), eps: float = 1e-5
) -> torch.Tensor:
    """Multi-resolution STFT magnitude loss: mean over scales of the L1 distances of log magnitudes
    and of linear magnitudes (hop = window / 4). x_hat, x: [B, 1, N] -> [B].

    No spectral-convergence term: its per-example normalisation by ||S(x)|| explodes on the
    near-silent crops of the tiny corpus.
    """
    total = x.new_zeros(x.shape[0])
    for w in windows:
        a = stft_magnitude(x_hat, w, w // 4)
        b = stft_magnitude(x, w, w // 4)
        lm = (torch.log(a + eps) - torch.log(b + eps)).abs().mean(dim=(1, 2))
        lin = (a - b).abs().mean(dim=(1, 2))
        total = total + lm + lin
    return total / len(windows)


def kl_loss(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)), summed over channels, averaged over frames.

    mean, logvar: [B, C, T] -> [B].
    """
    kl = 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0)
    return kl.sum(dim=1).mean(dim=1)


def vae_loss(
    vae: AudioAutoencoder, x: torch.Tensor, cfg: VAETrainConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """One training objective evaluation. x: [B, 1, N] -> (scalar loss, parts)."""
    spectrum = None
    if cfg.spectrum_weight:
        if vae.config.architecture != "stft":
            raise ValueError("spectrum_weight needs a VAE with architecture='stft'")
        mean, logvar = vae.encode_posterior(x)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        logmag, phase = vae.decoder.spectrum(mean + (0.5 * logvar).exp() * noise)
        x_hat = vae.decoder.synthesise(logmag, phase)
        dec = vae.decoder
        target = torch.log(stft_same(x, dec.n_fft, dec.hop, dec.window).abs() + cfg.spectrum_eps)
        pred = torch.log(logmag.exp().clamp(max=1e3) + cfg.spectrum_eps)
        spectrum = (pred - target).abs().mean(dim=(1, 2))
    else:
        x_hat, mean, logvar = vae(x, sample=True, generator=generator)
    sr = vae.sample_rate
    mel = multiscale_mel_loss(x_hat, x, sr, cfg.mel_windows, cfg.mel_bins)
    kl = kl_loss(mean, logvar)
    loss = cfg.mel_weight * mel + cfg.kl_weight * kl
    parts = {"mel": float(mel.detach().mean()), "kl": float(kl.detach().mean())}
    if cfg.sc_weight:
        sc = spectral_convergence_loss(x_hat, x)
        loss = loss + cfg.sc_weight * sc
        parts["sc"] = float(sc.detach().mean())
    if spectrum is not None:
        loss = loss + cfg.spectrum_weight * spectrum
        parts["spectrum"] = float(spectrum.detach().mean())
    if cfg.stft_weight:
        st = multiresolution_stft_loss(x_hat, x, cfg.stft_windows)
        loss = loss + cfg.stft_weight * st
        parts["stft"] = float(st.detach().mean())
    loss = loss.mean()
    parts["loss"] = float(loss.detach())
    return loss, parts


def _random_crops(audio: torch.Tensor, batch: int, crop: int, g: torch.Generator) -> torch.Tensor:
    """audio: [N, 1, L] -> random crops [batch, 1, crop] (clip and offset drawn from `g`)."""
    n, _, length = audio.shape
    idx = torch.randint(0, n, (batch,), generator=g)
    if crop >= length:
        return audio[idx]
    off = torch.randint(0, length - crop + 1, (batch,), generator=g)
    return torch.stack([audio[i, :, o : o + crop] for i, o in zip(idx.tolist(), off.tolist())])


def train_vae(
    vae: AudioAutoencoder,
    audio: torch.Tensor,
    cfg: VAETrainConfig = VAETrainConfig(),
    progress: bool = True,
    log_every: int = 50,
) -> dict:
    """Train `vae` in place on random crops of `audio` [N, 1, L] (float, in [-1, 1]).

    Deterministic given `cfg.seed` (crops, posterior noise and weight updates on one CPU thread).
    Returns a history dict: {"step": [...], "loss": [...], "mel": [...], "kl": [...], "seconds",
    "cpu_seconds" (process CPU time, all threads)}.
    """

    if audio.dim() != 3 or audio.shape[1] != 1:
        raise ValueError(f"audio must be [N, 1, L], got {tuple(audio.shape)}")
    if cfg.crop_samples % vae.hop:
        raise ValueError(f"crop_samples={cfg.crop_samples} must be a multiple of the hop {vae.hop}")
    if cfg.crop_samples <= max(cfg.mel_windows) // 2:
        raise ValueError(
            f"crop_samples={cfg.crop_samples} is too short for the largest mel window {max(cfg.mel_windows)}"
        )
    if cfg.stft_weight and cfg.crop_samples <= max(cfg.stft_windows) // 2:
        raise ValueError(
            f"crop_samples={cfg.crop_samples} is too short for the largest STFT window {max(cfg.stft_windows)}"
        )
    if audio.shape[-1] < cfg.crop_samples:
        raise ValueError(
            f"clips of {audio.shape[-1]} samples are shorter than crop_samples={cfg.crop_samples}"
        )
    dev = next(vae.parameters()).device
    g_data = torch.Generator().manual_seed(cfg.seed)
    g_noise = torch.Generator(device=dev).manual_seed(cfg.seed + 1)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    hist: dict = {"step": [], "loss": [], "mel": [], "kl": []}
    vae.train()
    t0, c0 = time.time(), time.process_time()
    bar = tqdm(range(cfg.steps), desc="vae", disable=not progress, mininterval=2.0)
    ema = None
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.lr_final_fraction)
        x = _random_crops(audio, cfg.batch_size, cfg.crop_samples, g_data).to(dev)
        loss, parts = vae_loss(vae, x, cfg, g_noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.grad_clip)
        opt.step()
        ema = parts["loss"] if ema is None else 0.95 * ema + 0.05 * parts["loss"]
        if step % log_every == 0 or step == cfg.steps - 1:
            for k in ("loss", "mel", "kl"):
                hist[k].append(parts[k])
            hist["step"].append(step)
        bar.set_postfix(loss=f"{ema:.3f}", mel=f"{parts['mel']:.3f}", refresh=False)
    vae.eval()
    hist["seconds"] = time.time() - t0
    hist["cpu_seconds"] = time.process_time() - c0
    return hist


# ----------------------------------------------------------------------------------------------
# evaluation (per clip: [B])


def multiscale_stft_distance(
    x_hat: torch.Tensor, x: torch.Tensor, windows=(2048, 512, 128), eps: float = 1e-5
) -> torch.Tensor:
    """Mean over scales of [spectral convergence + mean |log10 |S(x_hat)| - log10 |S(x)||].

    Magnitudes are clamped at `eps` before the log. x_hat, x: [B, 1, N] -> [B] (0 iff equal spectra).
    """
    total = x.new_zeros(x.shape[0])
    for w in windows:
        a = stft_magnitude(x_hat, w, w // 4)
        b = stft_magnitude(x, w, w // 4)
        sc = (a - b).flatten(1).norm(dim=1) / (b.flatten(1).norm(dim=1) + 1e-7)
        lm = (a.clamp_min(eps).log10() - b.clamp_min(eps).log10()).abs().mean(dim=(1, 2))
        total = total + sc + lm
    return total / len(windows)


def multiscale_mel_distance(
    x_hat: torch.Tensor, x: torch.Tensor, sample_rate: int, windows=DAC_MEL_WINDOWS, bins=DAC_MEL_BINS
) -> torch.Tensor:
    """Mean over scales of the L1 distance of log10 mel magnitudes. [B, 1, N] -> [B]."""
    return multiscale_mel_loss(x_hat, x, sample_rate, windows, bins) / len(windows)


def si_sdr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB (zero-mean signals). est, ref: [B, 1, N] -> [B].

    Undefined (NaN) for a silent estimate or a silent reference.
    """
    est = est.reshape(est.shape[0], -1).double()
    ref = ref.reshape(ref.shape[0], -1).double()
    est = est - est.mean(dim=1, keepdim=True)
    ref = ref - ref.mean(dim=1, keepdim=True)
    ref_e = (ref * ref).sum(dim=1)
    alpha = (est * ref).sum(dim=1) / ref_e.clamp_min(eps)
    target = alpha[:, None] * ref
    noise = est - target
    out = 10 * torch.log10(
        (target * target).sum(dim=1).clamp_min(1e-20) / (noise * noise).sum(dim=1).clamp_min(1e-20)
    )
    undefined = ((est * est).sum(dim=1) < eps) | (ref_e < eps)
    return out.masked_fill(undefined, float("nan")).float()


def baseline_silence(x: torch.Tensor) -> torch.Tensor:
    """The all-zero 'reconstruction'. x: [B, 1, N] -> zeros [B, 1, N]."""
    return torch.zeros_like(x)


def baseline_lowpass(
    x: torch.Tensor, sample_rate: int, cutoff_hz: float = 1000.0, order: int = 8
) -> torch.Tensor:
    """Zero-phase Butterworth low-passed copy (scipy sosfiltfilt). x: [B, 1, N] -> [B, 1, N]."""

    sos = butter(order, cutoff_hz, btype="low", fs=sample_rate, output="sos")
    y = sosfiltfilt(sos, x.detach().cpu().double().numpy(), axis=-1)
    return torch.from_numpy(np.ascontiguousarray(y)).to(x.dtype).to(x.device)


@torch.no_grad()
def reconstruct(vae: AudioAutoencoder, audio: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """decode(encode(x)) with posterior means, in batches. audio: [N, 1, L] -> [N, 1, L]."""
    vae.eval()
    dev = next(vae.parameters()).device
    outs = [
        vae.decode(vae.encode(audio[i : i + batch_size].to(dev))).cpu()
        for i in range(0, len(audio), batch_size)
    ]
    return torch.cat(outs)


def _summary(values: torch.Tensor) -> dict:
    v = values.double()
    finite = v[torch.isfinite(v)]
    if finite.numel() == 0:
        return {"mean": None, "std": None, "n": int(v.numel()), "n_undefined": int(v.numel())}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std()) if finite.numel() > 1 else 0.0,
        "n": int(v.numel()),
        "n_undefined": int(v.numel() - finite.numel()),
    }


@torch.no_grad()
def evaluate_reconstruction(
    vae: AudioAutoencoder, audio: torch.Tensor, lowpass_hz: float = 1000.0, batch_size: int = 16,
    recon: torch.Tensor | None = None,
) -> dict:
    """Reconstruction metrics of `vae` on `audio` [N, 1, L] next to the silence and low-pass baselines.

    Returns {system: {metric: {"mean", "std", "n", "n_undefined"}}} for systems "vae", "silence",
    "lowpass_<cutoff>hz"; metrics "stft_distance" (lower is better), "mel_distance" (lower is
    better), "si_sdr_db" (higher is better; undefined for silence). `recon`: `reconstruct(vae, audio)` when the
    caller already has it.
    """
    sr = vae.sample_rate
    systems = {
        "vae": reconstruct(vae, audio, batch_size) if recon is None else recon,
        "silence": baseline_silence(audio),
        f"lowpass_{int(lowpass_hz)}hz": baseline_lowpass(audio, sr, lowpass_hz),
    }
    out = {}
    for name, y in systems.items():
        out[name] = {
            "stft_distance": _summary(multiscale_stft_distance(y, audio)),
            "mel_distance": _summary(multiscale_mel_distance(y, audio, sr)),
            "si_sdr_db": _summary(si_sdr(y, audio)),
        }
    return out
