"""The Gaussian VAEs (DAC-style waveform and STFT / iSTFT): shapes, parameter count, owned latent
normalisation, persistence, input checks, short training runs, and the evaluation helpers against
their baselines."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from soundctm.nn.vae import (
    AudioAutoencoder,
    VAEConfig,
    count_parameters,
    istft_same,
    stft_same,
    vae_config,
)
from soundctm.presets import PAPER_AUDIO, TINY_AUDIO
from soundctm.train.vae import (
    VAETrainConfig,
    baseline_lowpass,
    baseline_silence,
    kl_loss,
    multiresolution_stft_loss,
    multiscale_mel_distance,
    multiscale_stft_distance,
    si_sdr,
    train_vae,
    vae_loss,
    vae_train_config,
)

# even smaller architectures than the tiny presets (same hop and latent size) for fast tests
MICRO = dataclasses.replace(vae_config("tiny-dac"), encoder_dim=4, decoder_dim=32)
MICRO_STFT = dataclasses.replace(
    vae_config("tiny-stft"), encoder_dim=32, decoder_dim=32, encoder_blocks=1, decoder_blocks=2
)
BOTH = pytest.mark.parametrize("cfg", [MICRO, MICRO_STFT], ids=["dac", "stft"])
FAST_MEL = {"mel_windows": (64, 256, 1024), "mel_bins": (10, 40, 80)}


pytestmark = pytest.mark.usefixtures("one_thread")


def _tones(n: int, length: int, sr: int = 16000, seed: int = 0) -> torch.Tensor:
    """n clips [n, 1, length] of enveloped sine mixtures, amplitude < 1."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / sr
    f = 100 + 2000 * torch.rand(n, 2, 1, generator=g)
    a = 0.1 + 0.3 * torch.rand(n, 2, 1, generator=g)
    x = (a * torch.sin(2 * math.pi * f * t)).sum(1, keepdim=True)
    env = torch.exp(-t * (1 + 4 * torch.rand(n, 1, 1, generator=g)))
    return (x * env).float()


@pytest.mark.parametrize("name", ["tiny", "tiny-stft", "tiny-dac"])
def test_tiny_presets_match_tier_audio_spec(name):
    cfg = vae_config(name)
    assert cfg.hop == TINY_AUDIO.hop
    assert cfg.latent_channels == TINY_AUDIO.latent_channels
    assert cfg.sample_rate == TINY_AUDIO.sample_rate
    vae = AudioAutoencoder(cfg).eval()
    x = _tones(2, 4096)
    with torch.no_grad():
        z = vae.encode(x)
        assert z.shape == (2, 16, 4096 // 256)
        y = vae.decode(z)
    assert y.shape == x.shape and y.abs().max() <= 1.0
    assert vae.latent_frames(TINY_AUDIO.clip_samples) == TINY_AUDIO.latent_frames == 128
    with torch.no_grad():  # a full tiny-tier clip gives the diffusion presets' latent [16, 128]
        assert vae.encode(torch.zeros(1, 1, TINY_AUDIO.clip_samples)).shape == (1, 16, 128)


def test_tiny_default_is_the_stft_design_and_the_dac_design_stays_selectable():
    assert vae_config("tiny") == vae_config("tiny-stft")
    assert vae_config("tiny").architecture == "stft"
    dac = vae_config("tiny-dac")
    assert dac.architecture == "dac"
    # a DAC config's dict has no STFT-only keys, so checkpoints written before they existed keep
    # their checksums (and load: VAEConfig.from_dict of the old dict is the same config)
    assert not {"architecture", "n_fft", "encoder_blocks", "decoder_blocks"} & set(dac.to_dict())
    assert VAEConfig.from_dict(dac.to_dict()) == dac
    stft = vae_config("tiny-stft")
    assert VAEConfig.from_dict(stft.to_dict()) == stft
    assert vae_train_config("tiny") == vae_train_config("tiny-stft")
    assert vae_train_config("tiny-dac") == VAETrainConfig()
    with pytest.raises(ValueError, match="unknown VAE training preset"):
        vae_train_config("huge")


def test_stft_same_framing_and_perfect_reconstruction():
    x = _tones(3, 4096) + 0.01 * torch.randn(3, 1, 4096, generator=torch.Generator().manual_seed(0))
    win = torch.hann_window(1024)
    spec = stft_same(x, 1024, 256, win)
    assert spec.shape == (3, 513, 4096 // 256)
    torch.testing.assert_close(istft_same(spec, 1024, 256, win), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("phase,fourier", [("absolute", 0), ("integrated", 0), ("absolute", 3)])
def test_stft_decoder_output_and_gradients(phase, fourier):
    torch.manual_seed(0)
    vae = AudioAutoencoder(dataclasses.replace(MICRO_STFT, phase=phase, fourier_features=fourier))
    x = _tones(2, 2048)
    y, mean, logvar = vae(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and mean.shape == logvar.shape == (2, 16, 8)
    assert y.abs().max() <= 1.0
    multiresolution_stft_loss(y, x).sum().backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in vae.encoder.parameters())


def test_paper_preset_parameter_count_and_shapes_on_meta():
    cfg = vae_config("paper")
    assert cfg.hop == PAPER_AUDIO.hop and cfg.latent_channels == PAPER_AUDIO.latent_channels
    with torch.device("meta"):
        vae = AudioAutoencoder(cfg)
        n = count_parameters(vae)
        # App. C.2: "the model has 63.5M parameters"
        assert abs(n - 63.5e6) / 63.5e6 < 0.05, n
        x = torch.empty(2, 1, 4 * cfg.hop)
        mean, logvar = vae.encode_posterior(x)
        assert mean.shape == logvar.shape == (2, 64, 4)
        z = vae.encode(x)
        assert z.shape == (2, 64, 4)
        assert vae.decode(z).shape == (2, 1, 4 * cfg.hop)


def test_config_validation():
    with pytest.raises(ValueError, match="same product"):
        VAEConfig(encoder_rates=(4, 4), decoder_rates=(4, 8))
    with pytest.raises(ValueError, match="unknown VAE architecture"):
        dataclasses.replace(vae_config("tiny"), architecture="mel")
    with pytest.raises(ValueError, match="n_fft"):
        dataclasses.replace(vae_config("tiny"), n_fft=128)
    with pytest.raises(ValueError, match="unknown phase mode"):
        dataclasses.replace(vae_config("tiny"), phase="random")


def test_stft_encoder_posterior_starts_at_logvar_init():
    vae = AudioAutoencoder(dataclasses.replace(MICRO_STFT, logvar_init=-9.0))
    with torch.no_grad():
        _, logvar = vae.encode_posterior(_tones(2, 2048))
    assert abs(float(logvar.mean()) + 9.0) < 1.5


def test_spectrum_loss_term_only_for_stft_vaes():
    x = _tones(2, 1024)
    cfg = VAETrainConfig(crop_samples=1024, spectrum_weight=1.0, **FAST_MEL)
    torch.manual_seed(0)
    loss, parts = vae_loss(AudioAutoencoder(MICRO_STFT), x, cfg, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and parts["spectrum"] > 0
    with pytest.raises(ValueError, match="architecture='stft'"):
        vae_loss(AudioAutoencoder(MICRO), x, cfg)
    # unused optional terms stay out of the settings dict (cache keys of older settings unchanged)
    assert not {"stft_weight", "spectrum_weight"} & set(VAETrainConfig().to_dict())
    with pytest.raises(ValueError, match="unknown VAE preset"):
        vae_config("huge")


@BOTH
def test_length_not_multiple_of_hop_is_a_clear_error(cfg):
    vae = AudioAutoencoder(cfg)
    with pytest.raises(ValueError, match="multiple of the VAE hop 256"):
        vae.encode(torch.zeros(1, 1, 1000))
    with pytest.raises(ValueError, match=r"\[B, 1, N\]"):
        vae.encode(torch.zeros(1, 1000 * 256))
    with pytest.raises(ValueError, match="latents of shape"):
        vae.decode(torch.zeros(1, 3, 4))


@BOTH
def test_normalisation_round_trip_and_persistence(tmp_path, cfg):
    torch.manual_seed(0)
    vae = AudioAutoencoder(cfg).eval()
    x = _tones(6, 1024)
    with torch.no_grad():
        raw, _ = vae.encode_posterior(x)
        # before fitting, encode returns raw posterior means
        torch.testing.assert_close(vae.encode(x), raw)
        vae.fit_normalisation(iter([raw[:3], raw[3:]]), sigma_data=0.5)
        z = vae.encode(x)
        # normalised on the fitting set: per-channel mean 0 and std sigma_data
        torch.testing.assert_close(z.mean(dim=(0, 2)), torch.zeros(16), atol=1e-5, rtol=0)
        torch.testing.assert_close(z.std(dim=(0, 2)), torch.full((16,), 0.5), atol=1e-4, rtol=0)
        # decode un-normalises with the stored stats: decode(encode(x)) == decoder(posterior mean)
        torch.testing.assert_close(vae.decode(z), vae.decoder(raw), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(vae.decoder(z), vae.decoder(raw))
        y = vae.decode(z)

    path = vae.save(tmp_path / "vae.safetensors")
    loaded = AudioAutoencoder.load(path)
    assert loaded.config == vae.config
    assert float(loaded.sigma_data) == 0.5 and bool(loaded.normalisation_fitted)
    torch.testing.assert_close(loaded.latent_mean, vae.latent_mean, atol=0, rtol=0)
    torch.testing.assert_close(loaded.latent_std, vae.latent_std, atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), z, atol=0, rtol=0)
        torch.testing.assert_close(loaded.decode(z), y, atol=0, rtol=0)
    assert loaded.checksum() == vae.checksum()
    loaded.latent_std.mul_(2)
    assert loaded.checksum() != vae.checksum()


def test_load_rejects_other_files(tmp_path):
    from soundctm.io import save_safetensors

    p = save_safetensors(tmp_path / "x.safetensors", {"w": torch.zeros(2)}, {"kind": "Other"})
    with pytest.raises(ValueError, match="not an AudioAutoencoder"):
        AudioAutoencoder.load(p)


@BOTH
def test_sampled_encoding_differs_and_is_seeded(cfg):
    vae = AudioAutoencoder(cfg).eval()
    x = _tones(2, 1024)
    with torch.no_grad():
        a = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(1))
        b = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(1))
        c = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a, c)


def test_kl_is_zero_for_standard_normal_posterior():
    m = torch.zeros(2, 4, 3)
    assert torch.equal(kl_loss(m, torch.zeros_like(m)), torch.zeros(2))
    assert (kl_loss(m + 1, torch.zeros_like(m)) > 0).all()


@pytest.mark.parametrize(
    "arch,extra",
    [(MICRO, {}), (MICRO_STFT, {"stft_weight": 1.0, "stft_windows": (256, 1024)})],
    ids=["dac", "stft"],
)
def test_a_few_training_steps_reduce_the_loss(arch, extra):
    torch.manual_seed(0)
    audio = _tones(8, 2048)
    cfg = VAETrainConfig(
        steps=30, batch_size=4, crop_samples=1024, lr=3e-3, warmup_steps=2, seed=0, **FAST_MEL, **extra
    )
    vae = AudioAutoencoder(arch)
    fixed = audio[:4, :, :1024]
    with torch.no_grad():
        before = vae_loss(vae, fixed, cfg, torch.Generator().manual_seed(0))[0].item()
    hist = train_vae(vae, audio, cfg, progress=False, log_every=5)
    with torch.no_grad():
        after = vae_loss(vae, fixed, cfg, torch.Generator().manual_seed(0))[0].item()
    assert after < 0.85 * before, (before, after)
    assert hist["loss"][-1] < hist["loss"][0]


@BOTH
def test_training_is_deterministic(cfg):
    audio = _tones(4, 2048)
    tcfg = VAETrainConfig(
        steps=3, batch_size=2, crop_samples=1024, warmup_steps=1, seed=3, stft_weight=1.0,
        stft_windows=(256, 512), **FAST_MEL
    )
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        vae = AudioAutoencoder(cfg)
        train_vae(vae, audio, tcfg, progress=False)
        outs.append(vae.checksum())
    assert outs[0] == outs[1]


def test_training_rejects_unaligned_crops_and_adversarial_weights():
    vae = AudioAutoencoder(MICRO)
    with pytest.raises(ValueError, match="multiple of the hop"):
        train_vae(vae, _tones(2, 2048), VAETrainConfig(crop_samples=1000), progress=False)
    with pytest.raises(ValueError, match="too short"):
        train_vae(vae, _tones(2, 2048), VAETrainConfig(crop_samples=512), progress=False)
    with pytest.raises(ValueError, match="too short for the largest STFT window"):
        train_vae(vae, _tones(2, 2048), VAETrainConfig(crop_samples=1024, stft_weight=1.0, **FAST_MEL),
                  progress=False)
    with pytest.raises(NotImplementedError):
        VAETrainConfig(adv_weight=1.0)


def test_evaluation_metrics_and_baselines():
    t = torch.arange(8192) / 16000
    ph = torch.tensor([0.0, 1.0, 2.0])[:, None, None]
    # energy below and above the 1 kHz cut-off, so the low-pass copy loses something
    x = 0.3 * torch.sin(2 * math.pi * 400 * t + ph) + 0.3 * torch.sin(2 * math.pi * 3000 * t + 2 * ph)
    torch.manual_seed(0)
    noisy = x + 0.01 * torch.randn_like(x)
    # identity: zero distances, very high SI-SDR
    assert torch.allclose(multiscale_stft_distance(x, x), torch.zeros(3))
    assert torch.allclose(multiscale_mel_distance(x, x, 16000), torch.zeros(3))
    assert (si_sdr(x, x) > 100).all()
    # SI-SDR is scale invariant; a slightly noisy copy beats the low-pass and silence baselines
    torch.testing.assert_close(si_sdr(0.5 * noisy, x), si_sdr(noisy, x), atol=1e-3, rtol=0)
    lp = baseline_lowpass(x, 16000, 1000.0)
    sil = baseline_silence(x)
    assert lp.shape == x.shape and torch.equal(sil, torch.zeros_like(x))
    near = 0.9 * x  # a gain change: small spectral distances (the log-spectral metrics punish a noise floor)
    assert (si_sdr(noisy, x) > si_sdr(lp, x)).all()
    for d in (multiscale_stft_distance, lambda a, b: multiscale_mel_distance(a, b, 16000)):
        assert (d(near, x) < d(lp, x)).all()
        assert (d(lp, x) < d(sil, x)).all()
    assert torch.isnan(si_sdr(sil, x)).all()  # undefined for silence
