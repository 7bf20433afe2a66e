"""`soundctm evaluate` and the extraction command: the metrics' command lines, where a parallel run
gets its Ray mapper (`soundctm.distributed.map_chunks_ray`).

    soundctm evaluate GEN_DIR --reference REF --metrics fd,kl,is,clap --workers N
    python -m soundctm.commands.evaluate DIR --embedder NAME --work-dir W [--workers N]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from soundctm.cmdline import CLIError, Parser, in_dir, in_file, one_line, out_file, positive_float, positive_int, run
from soundctm.distributed import map_chunks_ray
from soundctm.io import write_json
from soundctm.metrics import evaluate
from soundctm.metrics.evaluate import (
    _NEEDS_REF,
    DEFAULT_METRICS,
    EMBEDDER_SETS,
    _kind,
    evaluate_dirs,
    format_table,
    resolve_embedders,
)
from soundctm.metrics.extract import UnreadableAudioError, extract_dir, list_audio
from soundctm.metrics.indomain import EvaluatorError
from soundctm.metrics.registry import NonFiniteAudioError, available_embedders

__all__ = ["main", "extract_main"]


def _ray_mapper(workers: int, init_kwargs: dict | None = None):
    """The chunk mapper of a parallel run (None for one worker)."""
    return functools.partial(map_chunks_ray, init_kwargs=init_kwargs) if workers > 1 else None


def _checked(a) -> tuple[list[str], dict[str, str]]:
    """The metrics and embedder overrides of `soundctm evaluate`, every name and path checked (CLIError)."""
    if a.out:
        out_file(a.out)
    in_dir(a.gen_dir, "generated audio folder")
    metrics = [m.strip() for m in a.metrics.split(",") if m.strip()]
    if not metrics:
        raise CLIError(f"--metrics names no metric (got {a.metrics!r}); e.g. --metrics {','.join(DEFAULT_METRICS)}")
    for m in metrics:
        try:
            _kind(m)
        except ValueError as e:
            raise CLIError(f"--metrics: {e}") from None
    table: dict[str, str] = {}
    known = available_embedders()
    for item in a.embedder:
        if "=" not in item:
            raise CLIError(f"--embedder expects METRIC=NAME, got {item!r}")
        k, v = (x.strip() for x in item.split("=", 1))
        if k not in metrics:
            raise CLIError(f"--embedder {item!r}: {k!r} is not one of --metrics {','.join(metrics)}")
        if v not in known:
            raise CLIError(f"--embedder {item!r}: unknown embedder {v!r}; available: {', '.join(known)}")
        table[k] = v
    if a.reference is None:
        need = [m for m in metrics if _kind(m) in _NEEDS_REF]
        if need:
            raise CLIError(f"{', '.join(need)} need a reference set: pass --reference DIR|ROOT|CSV "
                           "(or ask only for --metrics is,clap)")
    elif not Path(a.reference).expanduser().exists():
        raise CLIError(f"--reference not found: {a.reference}")
    if a.captions is not None:
        in_file(a.captions, "--captions file")
    if not list_audio(a.gen_dir):
        raise CLIError(f"no audio files in the generated audio folder {a.gen_dir}")
    return metrics, table


def _evaluate(argv) -> int:
    ap = Parser(
        prog="soundctm evaluate", description=evaluate.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("gen_dir", help="directory of generated audio files (file stem = youtube_id)")
    ap.add_argument("--reference", default=None, help="reference audio dir, AudioCaps root, or AudioCaps CSV")
    ap.add_argument("--ref-split", default="test", help="CSV split of an AudioCaps root (default: test)")
    ap.add_argument("--metrics", default=",".join(DEFAULT_METRICS))
    ap.add_argument("--embedder-set", default="tiny", choices=sorted(EMBEDDER_SETS))
    ap.add_argument(
        "--embedder",
        action="append",
        default=[],
        metavar="METRIC=NAME",
        help="override the embedder of one metric (repeatable)",
    )
    ap.add_argument("--captions", default=None, help="CSV mapping file stem (youtube_id) to caption")
    ap.add_argument("--workers", type=positive_int, default=1, help="1 = in-process; >1 = Ray actor pool")
    ap.add_argument("--clip-seconds", type=positive_float, default=None,
                    help="cut / pad every clip to this many seconds (finite, > 0; default: as they are)")
    ap.add_argument("--chunk-size", type=positive_int, default=32, help="files per extraction chunk (default 32)")
    ap.add_argument("--cache", default=None, help="reference statistics directory")
    ap.add_argument("--work-dir", default=None, help="extraction work directory")
    ap.add_argument("--out", default=None, help="write results (with provenance) to this JSON file")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    metrics, table = _checked(a)
    try:
        emb_table = resolve_embedders(metrics, a.embedder_set, table)
    except (ValueError, ModuleNotFoundError, EvaluatorError, FileNotFoundError) as e:  # incompatible or absent
        raise CLIError(str(e)) from None
    try:
        res = evaluate_dirs(
            a.gen_dir,
            a.reference,
            metrics,
            emb_table,
            a.workers,
            map_chunks=_ray_mapper(a.workers),
            captions=a.captions,
            ref_split=a.ref_split,
            clip_seconds=a.clip_seconds,
            cache=a.cache,
            work_dir=a.work_dir,
            chunk_size=a.chunk_size,
            progress=not a.no_progress,
        )
    except (UnreadableAudioError, NonFiniteAudioError, EvaluatorError, FileNotFoundError) as e:
        # one line naming the file, no traceback (Ray hands worker errors back wrapped: `.cause`)
        raise CLIError(one_line(getattr(e, "cause", None) or e)) from None
    res["provenance"]["embedder_set"] = a.embedder_set
    print(format_table(res))
    if a.out:
        write_json(a.out, res)
        print(f"wrote {a.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`soundctm evaluate`: bad input -> one line on stderr, exit status 2."""
    return run("soundctm evaluate", _evaluate, argv)


def extract_main(argv: list[str] | None = None) -> int:
    """`python -m soundctm.commands.evaluate DIR --embedder NAME --work-dir W [--workers N]`: embed a
    directory in resumable chunks (Ray actors when workers > 1)."""
    ap = argparse.ArgumentParser(prog="python -m soundctm.commands.evaluate", description=extract_main.__doc__)
    ap.add_argument("directory")
    ap.add_argument("--embedder", required=True)
    ap.add_argument("--work-dir", default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--chunk-size", type=int, default=32)
    ap.add_argument("--clip-seconds", type=float, default=None)
    ap.add_argument("--ray-num-cpus", type=int, default=None)
    ap.add_argument("--ray-temp-dir", default=None)
    a = ap.parse_args(argv)
    init = {k: v for k, v in (("num_cpus", a.ray_num_cpus), ("_temp_dir", a.ray_temp_dir)) if v is not None}
    r = extract_dir(
        a.directory,
        a.embedder,
        a.work_dir,
        workers=a.workers,
        chunk_size=a.chunk_size,
        clip_seconds=a.clip_seconds,
        map_chunks=_ray_mapper(a.workers, init or None),
    )
    print(
        json.dumps({"files": len(r.names), "computed": r.computed, "reused": r.reused, "seconds": r.seconds})
    )
    return 0


if __name__ == "__main__":
    sys.exit(extract_main())
