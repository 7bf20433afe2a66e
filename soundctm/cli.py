"""`soundctm` command line: each subcommand lives in its own module and is imported lazily."""

from __future__ import annotations

import importlib
import sys

from soundctm.cmdline import CLIError, run, version

# subcommand -> (module, function, one-line help)
COMMANDS = {
    "demo": ("soundctm.demo", "main", "sample from a randomly initialised tiny student (CPU smoke demo)"),
    "params": ("soundctm.presets", "main", "print parameter counts of the presets (built on the meta device)"),
    "build-components": ("soundctm.train.components", "main", "build tiny corpus, train tiny VAE + text encoder"),
    "train-teacher": ("soundctm.commands.train", "train_teacher_main", "train an EDM teacher"),
    "distill": ("soundctm.commands.train", "distill_main", "distil a SoundCTM student (Algorithm 2)"),
    "generate": ("soundctm.generate", "main", "text -> n candidate clips (WAV + JSON sidecar) with a student export"),
    "refine": ("soundctm.generate", "refine_main", "regenerate a chosen candidate from its z_T with more steps"),
    "evaluate": ("soundctm.commands.evaluate", "main", "compute FD/KL/IS/CLAP between a generated and a reference set"),
    "build-evaluator": ("soundctm.metrics.indomain", "build_main", "train tiny-evt, fit its temperature"),
    "control": ("soundctm.commands.apps", "control_main",
                "text -> a clip whose loudness follows a target curve (loss-based guidance, Algorithm 3) + PNG"),
    "extend": ("soundctm.commands.apps", "extend_main",
               "zero-shot bandwidth extension of a sound file above a cut-off (data consistency) + PNG"),
    "report": ("soundctm.commands.report", "main",
               "results/<tier>/index.html: every table, claim verdict, figure, and audio to listen to"),
    "convert": ("soundctm.commands.convert", "main",
                "released SoundCTM-DiT student / teacher, GaussianDAC VAE, LAION-CLAP -> our safetensors"),
}


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: soundctm <command> [options]   (soundctm --version; soundctm <command> --help)\n\ncommands:")
        for name, (_, _, help_) in COMMANDS.items():
            print(f"  {name:18s} {help_}")
        return 0
    if argv[0] == "--version":
        print(f"soundctm {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        raise CLIError(f"unknown command {name!r}; run `soundctm --help`")
    mod, fn, _ = COMMANDS[name]
    # every command reports its own errors; this catches what one lets through (same one line, status 2)
    return run(f"soundctm {name}", getattr(importlib.import_module(mod), fn), rest)


def main(argv: list[str] | None = None) -> int:
    """`soundctm`: bad input -> one line on stderr and exit status 2 (soundctm.cmdline), for every command."""
    return run("soundctm", _main, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
