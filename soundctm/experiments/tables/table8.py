"""Table 8: inference speed at batch 1, end to end (text encoder + sampler + decoder), of SoundCTM and the two
consistency-distillation peers at 1, 2, 4 and 8 steps, median of repeated calls after warm-up, device named; each
timed with the unconditional branch skipped at ν = 1 (ours) and evaluated anyway (the official samplers). The
tiny tier times the tier's trained models; the paper tier the paper-size architectures with random weights.

    python reproduce/table8.py                  # tiny tier (CPU): times the tiny models (built if missing)
    python reproduce/table8.py --tier paper     # paper-size architectures, random weights (a GPU)
"""

from __future__ import annotations

from soundctm.experiments.catalog import AUDIO_LCM, CONSISTENCY_TTA, STUDENT
from soundctm.experiments.spec import Claim
from soundctm.experiments.speed import SpeedSystem, SpeedTable

P = lambda *v: dict(zip((1, 2, 4, 8), v))  # the paper's seconds on an A100 at 1, 2, 4, 8 steps

TABLE = SpeedTable(
    name="table8",
    title="Table 8: inference speed at batch 1 (seconds per sample, end to end)",
    description=__doc__.split("\n\n")[0],
    paper_device="NVIDIA A100, batch 1",
    systems=(
        SpeedSystem("soundctm", "SoundCTM-DiT-1B", STUDENT, "ctm", 5.0, "soundctm-dit-1b", "1/44.1kHz",
                    P(0.141, 0.193, 0.298, 0.501)),
        SpeedSystem("audiolcm", "AudioLCM (LCD)", AUDIO_LCM, "cm", 5.0, "audiolcm", "1/16kHz",
                    P(0.169, 0.181, 0.220, 0.224)),
        SpeedSystem("consistencytta", "ConsistencyTTA (CD)", CONSISTENCY_TTA, "cm", 4.0, "consistencytta",
                    "1/16kHz", P(0.216, 0.253, 0.306, 0.472)),
    ),
    claims=tuple(Claim(f"(1-{p})", f"SoundCTM's 1-step latency is below {p}'s", "faster", None, "soundctm-1",
                       f"{p}-1", margin=1.0) for p in ("audiolcm", "consistencytta")),
)
