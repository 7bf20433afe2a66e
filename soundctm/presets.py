"""Tier presets (frozen dataclasses), named after the paper's rows.

A tier is a preset, never a fork of the code: the `tiny` tier runs on any CPU in minutes,
the `paper` tier uses the paper's architectures and data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AudioSpec:
    """Audio format of a tier: sample rate, clip length and the VAE's hop (samples per latent frame)."""

    name: str
    sample_rate: int
    clip_samples: int
    hop: int
    latent_channels: int

    @property
    def latent_frames(self) -> int:
        return self.clip_samples // self.hop

    @property
    def clip_seconds(self) -> float:
        return self.clip_samples / self.sample_rate


# tiny tier: 16 kHz, 2.048 s clips, VAE hop 256 -> 16 x 128 latents.
TINY_AUDIO = AudioSpec("tiny", sample_rate=16000, clip_samples=32768, hop=256, latent_channels=16)
# paper tier, full band (Sec. 4.2, App. C.2): 44.1 kHz mono, 10.03 s, DAC-style VAE rates [4,4,8,8]
# (hop 1024) -> 64 x 432 latents.
PAPER_AUDIO = AudioSpec("paper", sample_rate=44100, clip_samples=442368, hop=1024, latent_channels=64)

AUDIO_SPECS = {"tiny": TINY_AUDIO, "paper": PAPER_AUDIO}


def audio_spec(tier: str) -> AudioSpec:
    try:
        return AUDIO_SPECS[tier]
    except KeyError:
        raise ValueError(f"unknown tier {tier!r}; expected one of {sorted(AUDIO_SPECS)}") from None
