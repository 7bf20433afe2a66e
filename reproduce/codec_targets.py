#!/usr/bin/env python
"""The tiny VAE against its transparency targets (test split, committed `tiny-evt` evaluator).

    python reproduce/codec_targets.py                       # the committed VAE; writes "codec_targets" into
                                                            # results/tiny/components.json
    python reproduce/codec_targets.py --vae PATH --no-write # any other VAE file, printed only

The teacher's FD comes from results/tiny/instrument.json (the ladder's `teacher` row, generated through the
committed VAE), so the FD ratio of another VAE is indicative only: its own teacher would differ.
"""

import argparse
import json
import sys
from pathlib import Path

from soundctm.data.corpus import tiny_corpus
from soundctm.experiments import codec
from soundctm.io import write_json
from soundctm.metrics.indomain import tiny_evt
from soundctm.nn.vae import AudioAutoencoder
from soundctm.paths import committed_tiny_dir

RESULTS = Path(__file__).resolve().parent.parent / "results" / "tiny"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vae", default=str(committed_tiny_dir() / "vae.safetensors"), help="VAE safetensors file")
    ap.add_argument("--cache", default=None, help="cache root holding the corpus (default: $SOUNDCTM_CACHE)")
    ap.add_argument("--instrument", default=str(RESULTS / "instrument.json"), help="for the teacher's FD")
    ap.add_argument("--out", default=str(RESULTS / "components.json"), help="JSON to add 'codec_targets' to")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    if not Path(args.vae).exists():
        print(f"no VAE file {args.vae}", file=sys.stderr)
        return 2
    res = codec.codec_targets(AudioAutoencoder.load(args.vae), tiny_corpus(args.cache), tiny_evt(),
                              codec.teacher_fd(args.instrument))
    res["vae"] = args.vae
    print("\n".join(codec.summary_lines(res)))
    if not args.no_write:
        out = Path(args.out)
        doc = json.loads(out.read_text()) if out.exists() else {}
        doc["codec_targets"] = res
        write_json(out, doc)
        print(f"wrote codec_targets into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
