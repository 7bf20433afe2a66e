"""The teacher-target bank: a stored stream of the CTM target's teacher solves z_u, read back by later runs.

In a SoundCTM distillation step the frozen teacher's ODE is solved from z_t to u (`ctm.CTMLoss.target`):
z_u = Solver(z_t, t, u; phi, omega). That solve depends on the data batch, the step's draws (from
(seed, step, example index), `train.distill.DistillTask.draws`), the grid and the teacher, never on the
student, so training variants that share them (another CTM distance, DSM weight, learning rate, EMA, the GAN
term...) can read one stored stream instead of solving again.

Layout: `<root>/<key>/` (`bank_key`: the teacher's checksum, the seed, the draw settings, the data's identity
and the numerics the solve ran with), holding `bank.json` (what the key stands for) and one safetensors file
per training step and worker, `w<world>-r<rank>/<step:08d>.safetensors`, with the tensor "z_u" [B, C, T]
(float32, exactly as solved) and as metadata the solve's fingerprint and the sha256 of z_u's bytes.

Contract (`TargetBank.get`): an entry is used only if its stored fingerprint equals the fingerprint of the
solve about to run (`solve_fingerprint`: sha256 over the exact bytes of z_t, t, u, omega, cond, uncond and the
grid, the solver's name, the teacher's checksum and the numerics) and its z_u bytes hash to the stored
sha256; otherwise the caller solves inline. A missing or unreadable entry is then written (`TargetBank.put`);
an entry holding another fingerprint is left as it is (the stream it belongs to stays whole; the run with
different draws computes its own targets). Writes are atomic (temp file + os.replace), so two processes
filling one bank never leave a partial file, and what they write for one fingerprint is the same.

A hit returns the very bytes an inline solve of the same inputs produced, so training with the bank is
bit-identical to training without it on the same numerics: the torch build, the device, the mixed-precision
mode and (on the CPU) the thread count are part of the key and of the fingerprint, because a float solve's
bits depend on them.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import torch
from safetensors import SafetensorError

from soundctm.io import load_safetensors, save_safetensors, settings_hash, write_json
from soundctm.paths import cache_dir

__all__ = ["TargetBank", "bank_key", "bank_root", "numerics_id", "solve_fingerprint", "solver_name",
           "BANK_VERSION"]

BANK_VERSION = 1


def solver_name(solver) -> str:
    """A stable name of a solver callable: module.qualname, with the bound arguments of a functools.partial."""
    if isinstance(solver, functools.partial):
        kw = ", ".join(f"{k}={v!r}" for k, v in sorted(solver.keywords.items()))
        args = ", ".join(repr(a) for a in solver.args)
        return f"partial({solver_name(solver.func)}; {args}; {kw})"
    return f"{getattr(solver, '__module__', '?')}.{getattr(solver, '__qualname__', repr(solver))}"


def numerics_id(device, amp: str = "off") -> str:
    """What, besides its inputs, sets the bits of a float solve: torch build, device (and GPU model), mixed
    precision and, on the CPU, torch's thread count."""
    dev = torch.device(device)
    parts = [f"torch {torch.__version__}", f"device {dev.type}", f"amp {amp}"]
    if dev.type == "cuda" and torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(dev))
    if dev.type == "cpu":
        parts.append(f"threads {torch.get_num_threads()}")
    return "; ".join(parts)


def _update(h, name: str, x: torch.Tensor) -> None:
    t = x.detach().to("cpu").contiguous()
    if t.is_floating_point() and t.dtype != torch.float64:
        t = t.float()  # float32 (float16 / bfloat16 widen exactly); float64 keeps its own bytes
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)}:".encode())
    h.update(t.numpy().tobytes())


def solve_fingerprint(z_t: torch.Tensor, t: torch.Tensor, u: torch.Tensor, omega: torch.Tensor,
                      cond: torch.Tensor, uncond: torch.Tensor, sigmas: torch.Tensor, *, solver: str,
                      teacher: str, numerics: str = "") -> str:
    """sha256 (hex) of a teacher solve's full input: the exact bytes of z_t [B, C, T], t, u, omega [B],
    cond [B, L, D], uncond [1 or B, L, D] and the grid sigmas [N] (contiguous CPU float32 copies, each with
    its dtype and shape), the solver's name, the teacher's checksum and the numerics (`numerics_id`)."""
    h = hashlib.sha256(f"soundctm target bank v{BANK_VERSION}\n".encode())
    for name, x in (("z_t", z_t), ("t", t), ("u", u), ("omega", omega), ("cond", cond), ("uncond", uncond),
                    ("sigmas", sigmas)):
        _update(h, name, torch.as_tensor(x))
    for name, s in (("solver", solver), ("teacher", teacher), ("numerics", numerics)):
        h.update(f"{name}:{s}\n".encode())
    return h.hexdigest()


def bank_key(cfg, *, teacher: str, data_info: dict, solver: str, numerics: str) -> tuple[str, dict]:
    """(folder name, what it stands for) of the bank a distillation with the resolved `cfg` reads: its
    preset, the teacher's checksum, the seed, every setting of the step's draws and grid, the data's identity
    (source, synthetic clip count, `ConditionedLatents.info`), the solver and the numerics. Settings that
    leave the solve alone (distance, weights, lr, EMA, GAN...) are not in it: variants share the bank."""
    desc = {
        "version": BANK_VERSION,
        "preset": cfg.preset,
        "teacher": teacher,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "omega_range": list(cfg.omega_range),
        "p_uncond": cfg.p_uncond,
        "max_ode_steps": cfg.max_ode_steps,
        "k_sampling": cfg.k_sampling,
        "n_grid": cfg.n_grid,
        "grid_to_zero": cfg.grid_to_zero,
        "data": cfg.data,
        "synthetic_clips": cfg.synthetic_clips if cfg.data == "synthetic" else None,
        "data_info": data_info,
        "solver": solver,
        "numerics": numerics,
    }
    if cfg.t_max_fraction:  # moves t and so the solve (s_end_fraction moves only s: it shares the bank)
        desc["t_max_fraction"] = cfg.t_max_fraction
    digest = settings_hash(desc)
    return f"{cfg.preset}-{digest}", desc


def bank_root(setting: str, cache=None) -> Path:
    """The folder under which the banks of `TrainConfig.target_bank` live: "auto" is
    `<cache or cache_dir()>/tiny/target-bank`, anything else is that folder."""
    if setting == "auto":
        return (Path(cache).expanduser() if cache is not None else cache_dir()) / "tiny" / "target-bank"
    return Path(setting).expanduser()


class TargetBank:
    """One bank folder of teacher solves z_u, one entry per (step, rank, world) (see the module docstring).

    `teacher`: the teacher's checksum; `solver`: the solver's name (`solver_name`); `numerics`:
    `numerics_id` of the run. `stats()` counts this object's lookups: hits, misses (every lookup that was
    not a hit), mismatches (the misses whose entry held another fingerprint), corrupt (unreadable entries or
    z_u bytes that do not hash to the stored sha256) and writes.
    """

    def __init__(self, folder: str | os.PathLike, *, teacher: str, solver: str, numerics: str = "",
                 describe: dict | None = None):
        self.folder = Path(folder)
        self.teacher, self.solver, self.numerics = teacher, solver, numerics
        self.hits = self.misses = self.mismatches = self.corrupt = self.writes = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        if describe is not None and not (self.folder / "bank.json").exists():
            write_json(self.folder / "bank.json", describe)

    @classmethod
    def for_run(cls, cfg, *, teacher: str, data_info: dict, solver: str, numerics: str) -> TargetBank:
        """The bank of a resolved distillation config (`cfg.target_bank` "auto" or a folder: `bank_root`)."""
        key, desc = bank_key(cfg, teacher=teacher, data_info=data_info, solver=solver, numerics=numerics)
        return cls(bank_root(cfg.target_bank, cfg.cache) / key, teacher=teacher, solver=solver, numerics=numerics,
                   describe=desc)

    def fingerprint(self, z_t, t, u, omega, cond, uncond, sigmas) -> str:
        """`solve_fingerprint` with this bank's solver, teacher and numerics."""
        return solve_fingerprint(z_t, t, u, omega, cond, uncond, sigmas, solver=self.solver, teacher=self.teacher,
                                 numerics=self.numerics)

    def path(self, step: int, rank: int = 0, world: int = 1) -> Path:
        return self.folder / f"w{int(world)}-r{int(rank)}" / f"{int(step):08d}.safetensors"

    def _read(self, path: Path) -> tuple[str, dict | None, torch.Tensor | None]:
        """("absent" | "corrupt" | "ok", metadata, z_u) of an entry file."""
        if not path.exists():
            return "absent", None, None
        try:
            tensors, meta = load_safetensors(path)
        except (OSError, ValueError, SafetensorError):
            return "corrupt", None, None
        z_u = tensors.get("z_u")
        if z_u is not None:  # an owned copy: the loaded tensor maps the file, which a later write may replace
            z_u = z_u.clone()
        if z_u is None or z_u.dtype != torch.float32 or not isinstance(meta.get("fingerprint"), str):
            return "corrupt", meta, None
        if hashlib.sha256(z_u.contiguous().numpy().tobytes()).hexdigest() != meta.get("z_u_sha256"):
            return "corrupt", meta, None
        return "ok", meta, z_u

    def get(self, step: int, fingerprint: str, rank: int = 0, world: int = 1) -> torch.Tensor | None:
        """The stored z_u [B, C, T] (float32, CPU) of this step and worker if its entry holds exactly
        `fingerprint` and is intact, else None (the caller solves inline)."""
        state, meta, z_u = self._read(self.path(step, rank, world))
        if state == "ok" and meta["fingerprint"] == fingerprint:
            self.hits += 1
            return z_u
        self.misses += 1
        if state == "ok":
            self.mismatches += 1
        elif state == "corrupt":
            self.corrupt += 1
        return None

    def put(self, step: int, fingerprint: str, z_u: torch.Tensor, rank: int = 0, world: int = 1) -> bool:
        """Store z_u [B, C, T] (float32) under this step and worker, atomically; True if written. An intact entry
        with another fingerprint is kept (no write); an absent, unreadable or identical one is (re)written."""
        if z_u.dtype != torch.float32:
            raise ValueError(f"the bank stores float32 solves, got {z_u.dtype}")
        path = self.path(step, rank, world)
        state, meta, _ = self._read(path)
        if state == "ok" and meta["fingerprint"] != fingerprint:
            return False
        z = z_u.detach().to("cpu").contiguous()
        save_safetensors(path, {"z_u": z}, {
            "fingerprint": fingerprint,
            "z_u_sha256": hashlib.sha256(z.numpy().tobytes()).hexdigest(),
            "step": int(step), "rank": int(rank), "world": int(world),
            "version": BANK_VERSION,
        })
        self.writes += 1
        return True

    def stats(self) -> dict:
        """{"path", "hits", "misses", "mismatches", "corrupt", "writes"} of this object's lookups and writes."""
        return {"path": str(self.folder), "hits": self.hits, "misses": self.misses, "mismatches": self.mismatches,
                "corrupt": self.corrupt, "writes": self.writes}
