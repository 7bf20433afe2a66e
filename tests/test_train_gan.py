"""The optional GAN term: discriminators, hinge losses, and a distillation step that uses them."""

import torch

from soundctm.train.gan import (
    AudioDiscriminators,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)
from soundctm.train.loop import TrainConfig, read_metrics, run_training


def test_discriminators_shapes_and_losses():
    torch.manual_seed(0)
    d = AudioDiscriminators(periods=(2, 3), n_ffts=(256, 128))
    wav = torch.randn(2, 1, 4000) * 0.1
    with torch.no_grad():
        logits, feats = d(wav)
    assert len(logits) == 4 and len(feats) == 4
    assert all(lg.shape[0] == 2 for lg in logits)
    # hinge: a discriminator that separates perfectly (real >= 1, fake <= -1) has zero loss
    real = [torch.full((2, 1, 3), 2.0)]
    fake = [torch.full((2, 1, 3), -2.0)]
    assert float(discriminator_hinge_loss(real, fake)) == 0.0
    assert float(discriminator_hinge_loss(fake, real)) == 6.0
    assert float(generator_hinge_loss(fake)) == 2.0
    assert float(feature_matching_loss(feats, feats)) == 0.0
    # the generator loss has gradients w.r.t. the audio
    x = wav.clone().requires_grad_(True)
    generator_hinge_loss(d(x)[0]).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_distillation_with_the_gan_term_trains_and_resumes(tmp_path):
    common = dict(
        kind="distill",
        data="synthetic",
        batch_size=2,
        synthetic_clips=2,
        max_ode_steps=1,
        gan=True,
        checkpoint_every=1,
        threads=1,
        export=False,
    )
    run_training(TrainConfig(steps=2, **common), tmp_path / "a", progress=False)
    run_training(TrainConfig(steps=1, **common), tmp_path / "b", progress=False)
    run_training(TrainConfig(steps=2, **common), tmp_path / "b", progress=False)
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert all(r["gan"] != 0 and r["lambda_gan"] > 0 and r["disc"] > 0 for r in a)
    # discriminator state is checkpointed: the resumed run reproduces the losses exactly
    assert [(r["loss"], r["gan"], r["disc"]) for r in a] == [(r["loss"], r["gan"], r["disc"]) for r in b]
