"""Write results/gpu/bench.json: SoundCTM-DiT latency per clip on this machine's GPU (see
soundctm.experiments.gpubench for what is timed and how).

    python bench/gpu_bench.py                      # paper size on cuda -> results/gpu/bench.json
    python bench/gpu_bench.py --small --device cpu --out /tmp/bench.json   # the same code, small, on a CPU

Every number in the file is measured by this run; the device's name, the torch / CUDA versions and the
commit are recorded with it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from soundctm.experiments import gpubench as G
from soundctm.io import write_json
from soundctm.provenance import REPO, provenance

DEFAULT_OUT = REPO / "results" / "gpu" / "bench.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench/gpu_bench.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="torch device (default cuda)")
    ap.add_argument("--small", action="store_true", help="the small size (a CPU runs it in seconds)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"output JSON (default {DEFAULT_OUT.relative_to(REPO)} at paper size on CUDA; none otherwise)")
    ap.add_argument("--steps", default="1,2,4,8,16", help="student step counts (default 1,2,4,8,16)")
    ap.add_argument("--nu", default="1,5", help="nu values (default 1,5)")
    ap.add_argument("--modes", default=",".join(G.MODES), help=f"modes (default {','.join(G.MODES)})")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend (default inductor)")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("bench/gpu_bench.py: no CUDA device here; use --small --device cpu to run the code on the CPU",
              file=sys.stderr)
        return 2
    out = a.out if a.out is not None else (DEFAULT_OUT if dev.type == "cuda" and not a.small else None)
    res = G.run(G.SMALL_SIZE if a.small else G.PAPER_SIZE, dev, steps=[int(x) for x in a.steps.split(",")],
                nus=[float(x) for x in a.nu.split(",")], modes=[m for m in a.modes.split(",") if m],
                repeats=a.repeats, warmup=a.warmup, compile_backend=a.compile_backend)
    res["provenance"] = provenance()
    if out is not None:
        write_json(out, res)
        print(f"[gpu-bench] wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
