"""The GPU latency benchmark of SoundCTM-DiT: text encoder + n student steps + VAE decoder, batch 1.

At paper size (`PAPER_SIZE`): the released layout (`paper-dit-official`, 1.04 B parameters, 64 x 432
latents = 10.03 s at 44.1 kHz), the GaussianDAC-sized VAE decoder (weight norm folded, as the official
inference removes it), and a text tower of LAION-CLAP's RoBERTa-base size (12 layers x 768, 77 tokens,
pooled and projected to the 512-d condition). Weights are random: latency does not depend on their
values, and nothing has to be downloaded. `SMALL_SIZE` is the same code at a size a CPU runs in
seconds (what the tests exercise).

Modes (`MODES`), each timed for every step count and nu:
  eager-fp32   the modules as they are;
  bf16         the same under torch.autocast(bfloat16);
  compile      bf16 with the DiT forward compiled by torch.compile;
  cuda-graph   bf16, the whole fixed-shape pipeline (text tower on fixed-length tokens, the n-jump
               sampler loop with every per-step scalar precomputed on the device, decoder) captured in
               one CUDA graph and replayed (CUDA only).
The sampler loop is `FixedSampler`: Algorithm 1 with gamma = 0 for one batch size and step count, with
no host synchronisation (the library's `sample` validates times with host-side checks, which a graph
capture cannot contain); the tests check it equals `soundctm.sampling.sample`.
`run(...)` returns every measurement; `python bench/gpu_bench.py` writes results/gpu/bench.json.
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from soundctm.ctm import CTMStudent
from soundctm.edm import Precond
from soundctm.experiments.timing import synchronize, time_call
from soundctm.nn.dit import DiTConfig
from soundctm.nn.vae import AudioAutoencoder, vae_config
from soundctm.presets import ModelPreset, build_backbone, model_preset
from soundctm.provenance import device_name
from soundctm.sampling import karras_steps

__all__ = ["BenchSize", "PAPER_SIZE", "SMALL_SIZE", "MODES", "TextTower", "FixedSampler", "Pipeline", "build", "run"]

MODES = ("eager-fp32", "bf16", "compile", "cuda-graph")


@dataclass(frozen=True)
class BenchSize:
    preset: str  # the student's model preset (its latent shape sets the clip length)
    vae: str  # VAE architecture preset (with GaussianDAC's latent convolutions)
    text_layers: int = 12
    text_width: int = 768
    text_heads: int = 12
    text_tokens: int = 77
    vocab: int = 50265
    dit: DiTConfig | None = None  # override the preset's backbone (the small size)
    latent_shape: tuple[int, int] | None = None


PAPER_SIZE = BenchSize("paper-dit-official", "paper")
SMALL_SIZE = BenchSize("paper-dit-official", "tiny-dac", text_layers=1, text_width=32, text_heads=2, text_tokens=8,
                       vocab=100, dit=DiTConfig(latent_channels=16, width=64, depth=2, heads=1, cond_dim=64,
                                                cross_kv_heads=1, rotary_dim=32, time_feat_dim=32, cond_mlp=True),
                       latent_shape=(16, 32))


class TextTower(nn.Module):
    """A RoBERTa-shaped caption encoder (token + position embeddings, post-norm GELU transformer layers,
    pooled first token -> Linear -> ReLU -> Linear, L2-normalised): LAION-CLAP's text branch's cost."""

    def __init__(self, layers: int, width: int, heads: int, tokens: int, vocab: int, out_dim: int):
        super().__init__()
        self.tokens = tokens
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(tokens + 2, width)
        self.norm = nn.LayerNorm(width)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.pool = nn.Linear(width, width)
        self.proj = nn.Sequential(nn.Linear(width, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, tokens] -> the condition [B, 1, out_dim]."""
        pos = torch.arange(ids.shape[1], device=ids.device)
        h = self.layers(self.norm(self.embed(ids) + self.pos(pos)[None]))
        pooled = torch.tanh(self.pool(h[:, 0]))
        return F.normalize(self.proj(pooled), dim=-1)[:, None]


class FixedSampler(nn.Module):
    """Algorithm 1 (gamma = 0) for a fixed batch and step count, every per-step quantity precomputed on
    the student's device: z_{n+1} = nu G(z_n, c) + (1 - nu) G(z_n, empty) with G of `CTMStudent` (Eq. 6).
    nu = 1 evaluates the conditional branch only unless `always_uncond`."""

    def __init__(self, student, steps: int, batch: int, omega: float = 5.0, nu: float = 1.0,
                 always_uncond: bool = False, net=None):
        super().__init__()
        self.student, self.steps, self.nu = student, int(steps), float(nu)
        object.__setattr__(self, "net", net if net is not None else student.net)  # e.g. a compiled forward
        self.both = nu != 1.0 or always_uncond
        dev = next(student.parameters()).device
        grid = karras_steps(steps).to(dev)
        t, s = grid[:-1], grid[1:]
        sc = student.scalings
        rows = 2 * batch if self.both else batch
        for name, v in (("c_in", sc.c_in(t)), ("c_skip", sc.c_skip(t)), ("c_out", sc.c_out(t)),
                        ("t_noise", sc.c_noise(t)), ("s_noise", sc.safe_c_noise(s, student.sigma_min)),
                        ("ratio", s / t)):
            self.register_buffer(name, v, persistent=False)
        self.register_buffer("omega", torch.full((rows,), float(omega), device=dev), persistent=False)
        self.rows = rows

    def forward(self, z: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        st = self.student
        c = torch.cat([cond, uncond.expand_as(cond).to(cond.dtype)]) if self.both else cond
        w_emb = st.omega_embed(self.omega)
        for i in range(self.steps):
            x = torch.cat([z, z]) if self.both else z
            extra = st.s_embed(self.s_noise[i].expand(self.rows)) + w_emb
            out = self.net(self.c_in[i] * x, self.t_noise[i].expand(self.rows), c, extra)
            g = self.c_skip[i] * x + self.c_out[i] * out
            jumped = self.ratio[i] * x + (1 - self.ratio[i]) * g
            if self.both:
                zc, zu = jumped.float().chunk(2)
                z = zc if self.nu == 1.0 else zu + self.nu * (zc - zu)
            else:
                z = jumped.float()
        return z


def _fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrisation by its current weight (inference, as the official code does)."""
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


@dataclass
class Pipeline:
    text: TextTower
    student: nn.Module
    vae: AudioAutoencoder
    ids: torch.Tensor  # [B, tokens] caption tokens
    uncond: torch.Tensor  # [1, 1, D] the empty caption's condition
    device: torch.device
    preset: ModelPreset

    @property
    def latent_shape(self) -> tuple[int, int]:
        return tuple(self.preset.latent_shape)

    def params(self) -> dict[str, int]:
        return {k: sum(p.numel() for p in m.parameters())
                for k, m in (("text", self.text), ("student", self.student), ("vae_decoder", self.vae.decoder))}


def build(size: BenchSize = PAPER_SIZE, device="cuda", batch: int = 1, seed: int = 0) -> Pipeline:
    """Random-weight modules of `size` on `device`, in eval mode with gradients off."""
    dev = torch.device(device)
    p = model_preset(size.preset)
    if size.dit is not None:
        p = replace(p, name=f"{p.name}-bench", backbone=size.dit, latent_shape=size.latent_shape,
                    cond_shape=(1, size.dit.cond_dim))
    torch.manual_seed(seed)
    with torch.device(dev):
        student = CTMStudent.from_teacher(Precond(build_backbone(p), p.sigma_data), **p.student_options())
        student.latent_shape, student.cond_shape, student.preset = p.latent_shape, p.cond_shape, p
        vcfg = replace(vae_config(size.vae), latent_channels=p.latent_shape[0], latent_convs=True)
        vae = AudioAutoencoder(vcfg)
        text = TextTower(size.text_layers, size.text_width, size.text_heads, size.text_tokens, size.vocab,
                         p.cond_shape[1])
    for m in (student, vae, text):
        with torch.no_grad():
            for prm in m.parameters():  # the zero-initialised output layers too: every matmul does real work
                if not prm.any():
                    prm.normal_(0, 0.02)
    _fold_weight_norm(vae)
    for m in (student, vae, text):
        m.eval().requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, size.vocab, (batch, size.text_tokens), generator=g).to(dev)
    with torch.no_grad():
        uncond = text(torch.ones(1, size.text_tokens, dtype=torch.long, device=dev))
    return Pipeline(text, student, vae, ids, uncond, dev, p)


def _autocast(pipe: Pipeline, mode: str):
    if mode == "eager-fp32":
        return contextlib.nullcontext()
    # a CUDA graph must not capture autocast's cache of cast weights (PyTorch's CUDA-graph notes)
    return torch.autocast(pipe.device.type, dtype=torch.bfloat16, cache_enabled=mode != "cuda-graph")


def make_call(pipe: Pipeline, mode: str, steps: int, nu: float = 1.0, omega: float = 5.0, *,
              always_uncond: bool = False, compile_backend: str = "inductor"):
    """A no-argument function generating one batch (text -> latents -> waveforms) in `mode`; it returns
    the waveforms [B, 1, N] (for the graph mode: the graph's static output)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    b = pipe.ids.shape[0]
    net = _compiled(pipe.student.net, compile_backend) if mode == "compile" else None
    sampler = FixedSampler(pipe.student, steps, b, omega, nu, always_uncond, net=net)
    g = torch.Generator(device=pipe.device).manual_seed(0)
    z_T = 80.0 * torch.randn((b, *pipe.latent_shape), generator=g, device=pipe.device)

    def once():
        with torch.no_grad(), _autocast(pipe, mode):
            cond = pipe.text(pipe.ids)
            z = sampler(z_T, cond, pipe.uncond)
            return pipe.vae.decode(z.float()).float()

    if mode != "cuda-graph":
        return once
    if pipe.device.type != "cuda":
        raise RuntimeError("the cuda-graph mode needs a CUDA device")
    stream = torch.cuda.Stream(pipe.device)
    stream.wait_stream(torch.cuda.current_stream(pipe.device))
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm-up on a side stream before capture (allocator, kernel selection)
            once()
    torch.cuda.current_stream(pipe.device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = once()

    def replay():
        graph.replay()
        return out

    return replay


_COMPILED: dict = {}


def _compiled(net: nn.Module, backend: str):
    """torch.compile of the backbone's forward (cached per module and backend within a run)."""
    key = (id(net), backend)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(net, backend=backend, dynamic=False)
    return _COMPILED[key]


def component_times(pipe: Pipeline, steps: int, repeats: int, mode: str = "eager-fp32") -> dict[str, float]:
    """Median seconds of the text tower, the sampler loop and the decoder alone (eager or bf16)."""
    b = pipe.ids.shape[0]
    sampler = FixedSampler(pipe.student, steps, b)
    with torch.no_grad(), _autocast(pipe, mode):
        cond = pipe.text(pipe.ids)
        z = torch.zeros((b, *pipe.latent_shape), device=pipe.device)
        parts = {"text": lambda: pipe.text(pipe.ids), "sampler": lambda: sampler(z, cond, pipe.uncond),
                 "decoder": lambda: pipe.vae.decode(z)}
        return {k: statistics.median(time_call(f, pipe.device, repeats, warmup=2)) for k, f in parts.items()}


def run(size: BenchSize = PAPER_SIZE, device="cuda", *, steps=(1, 2, 4, 8, 16), nus=(1.0, 5.0),
        modes=MODES, repeats: int = 20, warmup: int = 3, compile_backend: str = "inductor", log=print) -> dict:
    """Every (mode, steps, nu) latency of one clip at batch 1, with the device described."""
    dev = torch.device(device)
    modes = [m for m in modes if m != "cuda-graph" or dev.type == "cuda"]
    pipe = build(size, dev)
    clip_s = pipe.latent_shape[1] * pipe.vae.hop / pipe.vae.sample_rate
    rows = []
    for mode in modes:
        for nu in nus:
            for n in steps:
                call = make_call(pipe, mode, n, nu, compile_backend=compile_backend)
                t = time_call(call, dev, repeats, warmup)
                rows.append({"mode": mode, "steps": n, "nu": nu, "median_s": statistics.median(t),
                             "min_s": min(t), "seconds": t})
                log(f"[gpu-bench] {mode:11s} nu={nu:g} steps={n:2d}: {statistics.median(t) * 1e3:9.2f} ms")
        _COMPILED.clear()
    synchronize(dev)
    info = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else device_name(),
            "device_type": dev.type, "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32, "matmul_tf32": torch.backends.cuda.matmul.allow_tf32}
    return {"what": "SoundCTM-DiT latency per clip at batch 1: text tower + n student jumps + VAE decoder",
            "size": {**asdict(size), "clip_seconds": clip_s, "latent_shape": list(pipe.latent_shape),
                     "sample_rate": pipe.vae.sample_rate, "params": pipe.params()},
            "env": info, "repeats": repeats, "warmup": warmup,
            "components_eager_fp32_16_steps": component_times(pipe, 16, max(3, repeats // 4)),
            "rows": rows}
