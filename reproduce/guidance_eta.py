#!/usr/bin/env python
"""How the guidance step scale eta was chosen: intensity MSE against tiny-CLAP score of loss-based guidance
(Algorithm 3) for several eta, next to default generation and DITTO-2, on captions of the tiny corpus's
VALIDATION split (the tables use the test split), 16 steps, omega = 3.5, nu = 2, item i targeting curve i mod 6.

    python reproduce/guidance_eta.py                          # the committed tiny DiT student
    python reproduce/guidance_eta.py --checkpoint STUDENT.safetensors --eta 0.01,0.03,0.1 --ditto
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from soundctm.apps.ditto import ditto_sample
from soundctm.apps.guidance import guided_sample
from soundctm.apps.intensity import IntensityFeature, intensity_mse_per_clip, item_targets
from soundctm.data.corpus import make_clip_spec
from soundctm.generate import DEFAULT_STUDENT, DEFAULT_TEXT_ENCODER, DEFAULT_VAE, load_models
from soundctm.metrics import functional as Fm
from soundctm.metrics.indomain import TinyClapEmbedder
from soundctm.rng import prior_noise
from soundctm.sampling import karras_steps, sample


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(DEFAULT_STUDENT))
    ap.add_argument("--vae", default=str(DEFAULT_VAE))
    ap.add_argument("--text-encoder", default=str(DEFAULT_TEXT_ENCODER))
    ap.add_argument("--eta", default="0.01,0.03,0.1,0.3")
    ap.add_argument("--n", type=int, default=36, help="validation captions (clip i's first caption)")
    ap.add_argument("--corpus-seed", type=int, default=0)
    ap.add_argument("--ditto", action="store_true", help="also DITTO-2 (gamma = 0)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    m = load_models(a.checkpoint, a.vae, a.text_encoder)
    st, vae, sr = m.student, m.vae, m.sample_rate
    n_samples = vae.hop * int(st.latent_shape[1])
    feature = IntensityFeature(sr)
    caps = [make_clip_spec(a.corpus_seed, "val", i, n_samples / sr).captions[0] for i in range(a.n)]
    cond, unc = m.conditioner(caps), m.conditioner.uncond
    z_T = prior_noise(list(range(a.n)), tuple(st.latent_shape))
    target = torch.tensor(item_targets(range(a.n), feature.n_frames(n_samples)), dtype=torch.float32)
    decode = lambda z: vae.decode(z)[:, 0]
    clap = TinyClapEmbedder(m.text_encoder)
    text = clap.embed_text(caps)
    grid, opts = karras_steps(16), dict(omega=3.5, nu=2.0)
    print(f"{a.n} validation captions, {Path(a.checkpoint).name}; MSE in dB^2 (mean, median), tiny-CLAP score")

    def report(name, make):
        t0 = time.time()
        with torch.no_grad():
            w = decode(make()).numpy()
        mse = intensity_mse_per_clip(feature, w, target.numpy())
        score = Fm.cosine_rows(text, clap.embed(list(w), sr)["embeddings"]).mean()
        print(f"{name:18s} MSE {mse.mean():8.1f} {np.median(mse):8.1f}   CLAP {score:.3f}   ({time.time() - t0:.0f} s)",
              flush=True)

    report("default", lambda: sample(st, z_T, grid, cond, unc, **opts))
    for eta in (float(x) for x in a.eta.split(",")):
        report(f"guidance eta {eta:g}", lambda eta=eta: guided_sample(st, z_T, grid, cond, unc, decode=decode,
                                                                       feature=feature, target=target, eta=eta, **opts))
    if a.ditto:
        report("DITTO-2 gamma 0", lambda: ditto_sample(st, z_T, grid, cond, unc, decode=decode, feature=feature,
                                                        target=target, **opts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
