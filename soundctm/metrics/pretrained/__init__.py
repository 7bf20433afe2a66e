"""Pretrained metric models behind the `Embedder` interface, loading LOCAL weights only.

| name         | module    | what                                                            | needs               |
|--------------|-----------|-----------------------------------------------------------------|---------------------|
| `vggish`     | vggish.py | FAD_vgg: 128-d per 0.96 s example, plain PyTorch port            | torch, numpy        |
| `openl3`     | openl3.py | FD_openl3: mel256 / env / 512-d, 1 s frames every 0.5 s, port    | torch, numpy        |
| `passt`      | passt.py  | KL_passt / IS_passt: 527 AudioSet logits (two protocols)         | hear21passt (+timm) |
| `laion-clap` | clap.py   | CLAP score + CLAP-LPAPS stage features (630k-audioset-best)     | laion-clap          |

Weights: `weights.WEIGHTS` lists every file, its default place under `soundctm.paths.weights_dir()`
and the environment variable that overrides it. Nothing is downloaded; a missing file stops the run
with one message naming it. Submodules are imported on demand (by
`soundctm.metrics.registry.get_embedder`), so importing this package costs nothing.
"""

from .weights import WEIGHTS, require_weights, weight_path

__all__ = ["WEIGHTS", "require_weights", "weight_path"]
