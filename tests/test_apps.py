"""The training-free applications (soundctm.apps): loss-based guidance (Algorithm 3) against Algorithm 1 and
a loss with a known optimum, DITTO-2's z_T optimisation, the intensity feature's Savitzky-Golay kernel against
scipy and a least-squares derivation, bandwidth extension's data consistency (the observed band is kept; on an
exact Gaussian model the extension lowers LSD), and LSD against an independent scipy implementation."""

import math

import numpy as np
import pytest
import torch
from conftest import randomize_
from gaussian import ExactFlowStudent, GaussianTeacher
from scipy.signal import savgol_coeffs, stft

from soundctm.apps.bwe import consistency, equivalent_cutoff, extend_bandwidth, lowpass
from soundctm.apps.ditto import optimize_z_T
from soundctm.apps.guidance import guided_sample, normalized_step
from soundctm.apps.intensity import CURVES, HIGH_DB, LOW_DB, IntensityFeature, item_curve, target_curve
from soundctm.metrics import functional as Fm
from soundctm.presets import build_student
from soundctm.rng import prior_noise
from soundctm.sampling import karras_steps, sample

pytestmark = pytest.mark.usefixtures("one_thread")


def _student(seed=0):
    return randomize_(build_student("tiny-dit"), seed, scale=0.05).eval().requires_grad_(False)


def _gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


# ----------------------------------------------------------------------------------------------- guidance


@pytest.mark.parametrize("nu,gamma", [(1.0, 0.0), (2.0, 0.3)])
def test_zero_loss_guidance_is_algorithm_1_bit_for_bit(nu, gamma):
    st = _student()
    c, t = st.latent_shape
    z_T = prior_noise([1, 2, 3], (c, t))
    cond, unc = torch.randn(3, *st.cond_shape), torch.zeros(1, *st.cond_shape)
    dec = torch.nn.Conv1d(c, 1, 3, padding=1)  # a differentiable stand-in for the decoder
    decode = lambda z: dec(z)[:, 0]
    zero = lambda y_hat, y: (y_hat * 0.0).flatten(1).sum(1)
    grid = karras_steps(4)
    ref = sample(st, z_T, grid, cond, unc, omega=3.0, nu=nu, gamma=gamma, generator=_gens([7, 8, 9]))
    got = guided_sample(st, z_T, grid, cond, unc, decode=decode, feature=lambda x: x, target=torch.zeros(3, 1),
                        loss=zero, eta=0.5, omega=3.0, nu=nu, gamma=gamma, generator=_gens([7, 8, 9]))
    assert torch.equal(got, ref)
    # and a non-zero loss does change the sample (the comparison above can fail)
    moved = guided_sample(st, z_T, grid, cond, unc, decode=decode, feature=lambda x: x.mean(1, keepdim=True),
                          target=torch.ones(3, 1), eta=0.5, omega=3.0, nu=nu, gamma=gamma, generator=_gens([7, 8, 9]))
    assert not torch.allclose(moved, ref)


def test_step_is_normalised_by_the_overall_gradient_norm_per_example():
    g = torch.zeros(3, 2, 4)
    g[0] = 2.0
    g[1, 0, 0] = -5.0  # one non-zero element out of d = 8: rms = 5 / sqrt(8)
    step = normalized_step(g, torch.tensor(4.0), eta=0.25)
    d = 8
    assert torch.allclose(step[0], torch.full((2, 4), 1.0))  # eta * t * g / rms(g) = 0.25 * 4 * 2 / 2
    assert step[1, 0, 0].item() == pytest.approx(-1.0 * math.sqrt(d))  # 0.25 * 4 * (-5) / (5 / sqrt(8))
    assert step[1].pow(2).mean().sqrt().item() == pytest.approx(1.0)  # the step's RMS is eta * t
    assert torch.equal(step[2], torch.zeros(2, 4))  # zero gradient: zero step, no NaN


def _mean_error_of_guidance(steps, target, eta=0.2):
    """Exact Gaussian flow (data N(0.3, 0.5^2)), identity decoder, feature = the clip mean, target mean y."""
    st = ExactFlowStudent(GaussianTeacher(mu=0.3, sigma=0.5))
    z_T = prior_noise(list(range(8)), (1, 64))
    cond = torch.zeros(8, 1, 1)
    y = torch.full((8, 1), target)
    out = guided_sample(st, z_T, karras_steps(steps), cond, None, decode=lambda z: z[:, 0],
                        feature=lambda x: x.mean(1, keepdim=True), target=y, eta=eta, omega=1.0)
    return (out[:, 0].mean(1) - target).abs().mean().item()


def test_guidance_approaches_a_known_optimum_as_steps_grow():
    # unguided, the clip means scatter around mu = 0.3 (std 0.5 / 8); the loss's optimum is mean = -0.5
    errs = [_mean_error_of_guidance(n, -0.5) for n in (2, 4, 8, 16, 32)]
    unguided = _mean_error_of_guidance(16, -0.5, eta=0.0)
    assert unguided == pytest.approx(0.8, abs=0.15)
    assert errs[-1] < 0.01 * unguided
    assert all(b < a for a, b in zip(errs, errs[1:])), errs


def test_guidance_batch_independence_and_memory_options_give_the_same_result():
    st = _student(1)
    c, t = st.latent_shape
    z_T = prior_noise([4, 5, 6, 7], (c, t))
    cond, unc = torch.randn(4, *st.cond_shape), torch.zeros(1, *st.cond_shape)
    dec = torch.nn.Conv1d(c, 1, 3, padding=1).requires_grad_(False)
    kw = dict(decode=lambda z: dec(z)[:, 0], feature=lambda x: x.abs().mean(1, keepdim=True),
              target=torch.full((4, 1), 0.2), eta=0.3, omega=2.0, nu=1.5)
    grid = karras_steps(3)
    full = guided_sample(st, z_T, grid, cond, unc, **kw)
    chunked = guided_sample(st, z_T, grid, cond, unc, grad_batch=1, checkpoint=True, **kw)
    assert torch.allclose(full, chunked, atol=1e-5)
    kw1 = {**kw, "target": kw["target"][2:3]}
    alone = guided_sample(st, z_T[2:3], grid, cond[2:3], unc, **kw1)
    assert torch.allclose(alone[0], full[2], atol=1e-5)


# ----------------------------------------------------------------------------------------------- DITTO-2


def test_ditto_optimisation_moves_the_one_step_output_to_the_target_per_example():
    st = ExactFlowStudent(GaussianTeacher(mu=0.3, sigma=0.5))
    z_T = prior_noise([0, 1, 2], (1, 32))
    y = torch.tensor([[0.2], [0.4], [0.3]])  # unoptimised 1-step clip means: 0.30, 0.13, 0.30
    feature = lambda x: x.mean(1, keepdim=True)
    seen = []
    z_opt = optimize_z_T(st, z_T, torch.zeros(3, 1, 1), decode=lambda z: z[:, 0], feature=feature, target=y,
                         omega=1.0, callback=lambda k, losses: seen.append(losses))
    assert len(seen) == 70
    assert (seen[-1] < 1e-3 * seen[0] + 1e-6).all()
    one_step = sample(st, z_opt, karras_steps(1), torch.zeros(3, 1, 1), omega=1.0)
    assert torch.allclose(feature(one_step[:, 0]), y, atol=2e-3)
    # Adam is elementwise and the loss a sum of per-clip losses: a clip's result ignores its batch
    alone = optimize_z_T(st, z_T[1:2], torch.zeros(1, 1, 1), decode=lambda z: z[:, 0], feature=feature,
                         target=y[1:2], omega=1.0)
    assert torch.allclose(alone[0], z_opt[1], atol=1e-5)


# ----------------------------------------------------------------------------------------------- intensity


def test_intensity_feature_applies_the_savitzky_golay_kernel_of_a_one_second_window():
    sr, hop = 16000, 256
    feat = IntensityFeature(sr, frame=hop, hop=hop, polyorder=2)  # non-overlapping frames: frame dB is exact
    n_frames, k0 = 201, 100
    db = np.full(n_frames, -40.0)
    db[k0] = -20.0  # an impulse of +20 dB in the frame levels
    x = np.repeat(10.0 ** (db / 20.0), hop)  # constant frames: RMS = amplitude
    w = feat.window_frames(len(x))
    assert w == 61 and abs(w * hop / sr - 1.0) < 0.03  # the odd window closest to 1 s
    out = feat(torch.tensor(x)[None])[0].numpy()
    half = w // 2
    kernel = (out[k0 + half - np.arange(w)] + 40.0) / 20.0  # the response to the impulse is the kernel
    np.testing.assert_allclose(kernel, savgol_coeffs(w, 2), atol=1e-12)
    # independently: the least-squares quadratic fit's value at the window centre
    a = np.vander(np.arange(-half, half + 1, dtype=float), 3, increasing=True)
    np.testing.assert_allclose(kernel, np.linalg.pinv(a)[0], atol=1e-12)
    # the numpy metric and the differentiable feature agree, and the feature has gradients
    np.testing.assert_allclose(feat.numpy(x), out, atol=1e-9)


def test_target_curves_have_the_documented_shapes():
    f = 125
    u = np.linspace(0, 1, f)
    mid = (LOW_DB + HIGH_DB) / 2
    np.testing.assert_allclose(target_curve("rising", f), LOW_DB + (HIGH_DB - LOW_DB) * u)
    np.testing.assert_allclose(target_curve("falling", f), target_curve("rising", f)[::-1])
    np.testing.assert_allclose(target_curve("flat", f), mid)
    peak = target_curve("peak", f)
    assert peak.argmax() == f // 2 and peak.max() == pytest.approx(HIGH_DB) and peak[0] == pytest.approx(LOW_DB)
    np.testing.assert_allclose(target_curve("dip", f), LOW_DB + HIGH_DB - peak)
    steps = target_curve("two-step", f)
    assert sorted(set(steps.tolist())) == [LOW_DB, mid, HIGH_DB] and np.all(np.diff(steps) >= 0)
    assert [item_curve(i) for i in range(7)] == [*CURVES, CURVES[0]]
    with pytest.raises(ValueError, match="unknown intensity curve"):
        target_curve("zigzag", f)


# ----------------------------------------------------------------------------------------------- LSD


def _lsd_scipy(ref, est, n_fft=2048, hop=512, eps=1e-10):
    """LSD written from its definition with scipy's STFT: periodic Hann, centred with even (reflect) extension."""
    def power(x):
        win = np.hanning(n_fft + 1)[:-1]
        _, _, z = stft(x, window=win, nperseg=n_fft, noverlap=n_fft - hop, boundary="even", padded=False)
        return np.abs(z * win.sum()) ** 2  # scipy scales the spectrum by 1 / sum(window)
    d = np.log10(power(ref) + eps) - np.log10(power(est) + eps)
    return float(np.mean(np.sqrt(np.mean(d ** 2, axis=0))))


def test_lsd_matches_an_independent_scipy_implementation_on_known_signals():
    sr, n = 16000, 16000
    t = np.arange(n) / sr
    rng = np.random.default_rng(3)
    noise = rng.normal(size=n)
    tone = np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 3000 * t)
    chirp = np.sin(2 * np.pi * (200 + 3000 * t) * t)
    pairs = [(tone, 0.5 * tone), (noise, lowpass(noise, 1088.0, sr)), (chirp, noise), (tone, tone + 1e-3 * noise)]
    for a, b in pairs:
        assert Fm.lsd(a, b) == pytest.approx(_lsd_scipy(a, b), rel=1e-9)
    assert Fm.lsd(noise, 0.5 * noise) == pytest.approx(2 * math.log10(2), rel=1e-6)  # a gain g: 2 log10 g


# ----------------------------------------------------------------------------------------------- BWE


def test_lowpass_is_an_ideal_projection():
    sr, n = 16000, 4000
    t = np.arange(n) / sr
    low, high = np.sin(2 * np.pi * 500 * t), np.sin(2 * np.pi * 3000 * t)  # whole periods over the clip
    np.testing.assert_allclose(lowpass(low + high, 1088.0, sr), low, atol=1e-9)
    x = torch.randn(2, n, dtype=torch.float64)
    a = lowpass(x, 1500.0, sr)
    assert torch.allclose(lowpass(a, 1500.0, sr), a, atol=1e-12)
    assert torch.allclose(lowpass(consistency(x.flip(0), a, 1500.0, sr), 1500.0, sr), a, atol=1e-12)
    assert equivalent_cutoff(16000) == pytest.approx(3000 * 16000 / 44100)  # 1088.4 Hz: 13.6 % of the band
    with pytest.raises(ValueError, match="Nyquist"):
        lowpass(x, 8000.0, sr)


def test_bwe_keeps_the_observed_band_and_lowers_lsd_on_an_exact_gaussian_model():
    # data: white Gaussian noise N(0, 0.5^2) per sample; the latent is the waveform itself; the student is the
    # exact PF-ODE flow, so the only approximation is the data consistency itself
    sr, n, cut = 16000, 8192, 2000.0
    st = ExactFlowStudent(GaussianTeacher(mu=0.0, sigma=0.5))
    x_true = 0.5 * torch.randn(4, n, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    y = lowpass(x_true, cut, sr)
    z_T = prior_noise(list(range(20, 24)), (1, n)).double()
    z = extend_bandwidth(st, z_T, karras_steps(8).double(), torch.zeros(4, 1, 1), observation=y, cutoff_hz=cut,
                         sample_rate=sr, decode=lambda z: z[:, 0], encode=lambda x: x[:, None], omega=1.0)
    out = consistency(z[:, 0], y, cut, sr)
    assert torch.allclose(lowpass(out, cut, sr), y, atol=1e-9)  # the observed band is the observation
    # the generated band has the data's power (white noise: 0.25 per sample, 3/4 of it above 2 kHz)
    hi = out - lowpass(out, cut, sr)
    assert hi.pow(2).mean().item() == pytest.approx(0.25 * (1 - cut / (sr / 2)), rel=0.1)
    lsd_low = Fm.lsd(x_true.numpy(), y.numpy())
    lsd_ext = Fm.lsd(x_true.numpy(), out.numpy())
    assert lsd_ext < 0.2 * lsd_low
    # the consistency steps matter: without them the low band is not the observation's
    free = sample(st, z_T, karras_steps(8).double(), torch.zeros(4, 1, 1), omega=1.0)[:, 0]
    assert not torch.allclose(lowpass(free, cut, sr), y, atol=1e-2)


def test_bwe_runs_through_a_student_and_a_vae():
    import dataclasses

    from soundctm.nn.vae import AudioAutoencoder, vae_config

    torch.manual_seed(0)
    vae = AudioAutoencoder(dataclasses.replace(vae_config("tiny-stft"), encoder_dim=32, decoder_dim=32,
                                               encoder_blocks=1, decoder_blocks=2)).eval().requires_grad_(False)
    st = _student(2)
    c, t = st.latent_shape
    sr = vae.sample_rate
    x = 0.1 * torch.randn(2, t * vae.hop, generator=torch.Generator().manual_seed(1))
    y = lowpass(x, 1088.0, sr)
    cond, unc = torch.randn(2, *st.cond_shape), torch.zeros(1, *st.cond_shape)
    z = extend_bandwidth(st, prior_noise([0, 1], (c, t)), karras_steps(2), cond, unc, observation=y, cutoff_hz=1088.0,
                         sample_rate=sr, decode=lambda z: vae.decode(z)[:, 0], encode=lambda w: vae.encode(w[:, None]),
                         omega=3.5, nu=2.0)
    out = consistency(vae.decode(z)[:, 0], y, 1088.0, sr)
    assert torch.allclose(lowpass(out, 1088.0, sr), y, atol=1e-5)
    assert (out - y).pow(2).mean() > 0  # something above the cut-off was generated
