"""PaSST AudioSet tagger (527 classes) for KL_passt / IS_passt, built from the `hear21passt` package.

The network and its mel front end are hear21passt's own classes (`PaSST` via `get_model(...,
pretrained=False)`, `AugmentMelSTFT`, `PasstBasicWrapper` in "logits" mode, exactly the
`hear21passt.base.get_basic_model` configuration); the weights come from a LOCAL file
(`weights.WEIGHTS["passt"]`), never from the package's download path.

Two clip protocols (METRICS.md), chosen by `protocol=`:

- "stable-audio" (stable-audio-metrics `passt_kld`, full-band tables): mono 32 kHz, peak-normalised
  to -1 dBFS, 10 s windows every 5 s for i in range(0, max(5 s, N - 5 s), 5 s); a short last window
  longer than 1.5 s is zero-padded to 10 s (a shorter one is passed as is, like upstream); logits
  averaged over windows.
- "audioldm" (audioldm_eval, 16 kHz tables): mono 32 kHz, mean removed, cut or zero-padded to
  exactly 10 s, one window.

Both return one row of 527 logits per clip; softmax / KL / IS are the metric's job.
Deviation: an all-zero clip is left at zero by the peak normalisation (upstream divides by 0).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import torch

from soundctm.metrics.registry import Embedder, register

from .weights import load_into, load_state_dict, require_weights

__all__ = ["PasstEmbedder", "build_passt_model", "stable_audio_windows", "audioldm_window", "build"]

SAMPLE_RATE = 32000
WINDOW = 10 * SAMPLE_RATE
STEP = 5 * SAMPLE_RATE
ARCH = "passt_s_swa_p16_128_ap476"
PROTOCOLS = ("stable-audio", "audioldm")
MIN_SAMPLES = 6400  # 0.2 s: at least one 16-frame patch column for the network


@contextlib.contextmanager
def _quiet():
    """hear21passt prints model summaries and shapes; keep them off stdout."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def build_passt_model(**net_overrides) -> torch.nn.Module:
    """hear21passt wrapper (mel front end + PaSST-S, "logits" mode), random weights, eval mode.

    net_overrides: keyword arguments for `hear21passt.models.passt.PaSST` replacing the
      passt_s_swa_p16_128_ap476 sizes (e.g. embed_dim=64, depth=1 for tests); empty -> the
      package's `get_model(arch=...)`.
    Input [B, N] waveforms at 32 kHz -> [B, 527] logits.
    """
    with _quiet():  # hear21passt: an optional pretrained-metric package (the `metrics` extra)
        from hear21passt.models.passt import PaSST, get_model
        from hear21passt.models.preprocess import AugmentMelSTFT
        from hear21passt.wrapper import PasstBasicWrapper

        if net_overrides:
            kw = dict(
                u_patchout=0,
                s_patchout_t=0,
                s_patchout_f=0,
                img_size=(128, 998),
                patch_size=16,
                stride=(10, 10),
                in_chans=1,
                num_classes=527,
                embed_dim=768,
                depth=12,
                num_heads=12,
                distilled=True,
            )
            kw.update(net_overrides)
            net = PaSST(**kw)
        else:
            net = get_model(
                arch=ARCH,
                pretrained=False,
                n_classes=527,
                in_channels=1,
                fstride=10,
                tstride=10,
                input_fdim=128,
                input_tdim=998,
                u_patchout=0,
                s_patchout_t=0,
                s_patchout_f=0,
            )
        mel = AugmentMelSTFT(
            n_mels=128,
            sr=SAMPLE_RATE,
            win_length=800,
            hopsize=320,
            n_fft=1024,
            freqm=48,
            timem=192,
            htk=False,
            fmin=0.0,
            fmax=None,
            norm=1,
            fmin_aug_range=10,
            fmax_aug_range=2000,
        )
        model = PasstBasicWrapper(mel=mel, net=net, mode="logits")
    return model.eval()


def _peak_normalise(x: np.ndarray, db: float = -1.0) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0:
        return x.astype(np.float32)
    return (x * (10.0 ** (db / 20.0) / peak)).astype(np.float32)


def stable_audio_windows(x: np.ndarray) -> list[np.ndarray]:
    """stable-audio-metrics windowing of a 32 kHz mono clip [N] (after -1 dB peak normalisation)."""
    x = _peak_normalise(np.asarray(x, np.float32))
    out = []
    for i in range(0, max(STEP, len(x) - STEP), STEP):
        w = x[i : i + WINDOW]
        if len(w) < WINDOW and len(w) > int(WINDOW * 0.15):
            w = np.pad(w, (0, WINDOW - len(w)))
        if len(w) == 0:
            continue
        if len(w) < MIN_SAMPLES:
            w = np.pad(w, (0, MIN_SAMPLES - len(w)))
        out.append(np.ascontiguousarray(w, np.float32))
    return out


def audioldm_window(x: np.ndarray) -> np.ndarray:
    """audioldm_eval preparation of a 32 kHz mono clip [N]: mean removed, cut / zero-padded to 10 s."""
    x = np.asarray(x, np.float64)
    x = x - x.mean()
    x = x[:WINDOW] if len(x) >= WINDOW else np.pad(x, (0, WINDOW - len(x)))
    return x.astype(np.float32)


class PasstEmbedder(Embedder):
    """KL/IS embedder: forward(list of 32 kHz mono [N_i]) -> {"logits": [B, 527]}."""

    name = "passt"
    sample_rate = SAMPLE_RATE
    window = WINDOW
    channels = "mono"
    outputs = ("logits",)

    def __init__(
        self,
        model: torch.nn.Module,
        protocol: str = "stable-audio",
        device: str | torch.device = "cpu",
        batch_size: int = 8,
    ):
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown PaSST protocol {protocol!r}; choose one of {PROTOCOLS}")
        self.protocol = protocol
        self.version = f"{ARCH}/{protocol}"
        self.hop = STEP if protocol == "stable-audio" else None
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = int(batch_size)

    @property
    def min_samples(self) -> int:
        return 1  # each protocol pads on its own terms

    @classmethod
    def from_weights(
        cls,
        path=None,
        protocol: str = "stable-audio",
        device: str | torch.device = "cpu",
        net_overrides: dict | None = None,
        **kw,
    ) -> PasstEmbedder:
        """Load the local PaSST checkpoint (`path` or `SOUNDCTM_PASST_WEIGHTS`) into hear21passt's model.

        net_overrides: architecture changes passed to `build_passt_model` (tests only).
        """
        if path is None:
            path = require_weights("passt")["passt"]
        model = build_passt_model(**(net_overrides or {}))
        from hear21passt.models.passt import checkpoint_filter_fn  # optional package (metrics extra)

        sd = checkpoint_filter_fn(load_state_dict(path), model.net)
        load_into(model.net, sd, source=str(path))
        return cls(model, protocol=protocol, device=device, **kw)

    @torch.no_grad()
    def _logits(self, windows: list[np.ndarray]) -> np.ndarray:
        """Logits [W, 527] of windows (batched by equal length)."""
        out: list[np.ndarray | None] = [None] * len(windows)
        by_len: dict[int, list[int]] = {}
        for i, w in enumerate(windows):
            by_len.setdefault(len(w), []).append(i)
        with _quiet():
            for idx in by_len.values():
                for j in range(0, len(idx), self.batch_size):
                    sel = idx[j : j + self.batch_size]
                    xb = torch.from_numpy(np.stack([windows[i] for i in sel])).to(self.device)
                    lg = self.model(xb).float().cpu().numpy()
                    for k, i in enumerate(sel):
                        out[i] = lg[k]
        return np.stack(out)  # type: ignore[arg-type]

    def forward(self, waveforms: list[np.ndarray]) -> dict[str, np.ndarray]:
        if self.protocol == "audioldm":
            return {"logits": self._logits([audioldm_window(w) for w in waveforms])}
        per_clip = [stable_audio_windows(w) for w in waveforms]
        flat = [w for ws in per_clip for w in ws]
        lg = self._logits(flat)
        rows, k = [], 0
        for ws in per_clip:
            rows.append(lg[k : k + len(ws)].mean(0))
            k += len(ws)
        return {"logits": np.stack(rows)}


def build(weights=None, protocol: str = "stable-audio", device: str = "cpu", **kw) -> PasstEmbedder:
    """Registry factory: PaSST-S (ap476 SWA) with local weights (`SOUNDCTM_PASST_WEIGHTS`)."""
    return PasstEmbedder.from_weights(weights, protocol=protocol, device=device, **kw)


register("passt", build, overwrite=True)
