"""Static check of the device policy: tensors a model sees are created on the model's device.

The rule (an AST walk over every file of soundctm/):

  A call is a *creation* when it is `torch.F(...)` (or `th.F(...)`) with F in FACTORIES, or a call of
  one of the package's seeded draws in DRAWS (`soundctm.rng.prior_noise`, `randn`, `rand`). A creation
  *names its device* when it passes a `device=` keyword (or `**kwargs`, which may carry one), or when
  it is inside a `with torch.device(...):` block (the default device of everything created there).
  A function *has a device in scope* when its own body (nested functions and classes are judged on
  their own) names `device` or reads an attribute `.device`, or when it has a parameter named in
  DEVICE_PARAMS or annotated with a type whose text contains `Tensor` or `Module`.
  A violation is a creation that does not name its device inside a function with a device in scope.

Module-level code and functions without a device in scope are not checked (a constructor building
parameters runs under `with torch.device(...)`; a grid from integers is placed by its caller). A
deliberate CPU creation inside a device-aware function is listed in ALLOWED with its reason; an entry
that no longer matches anything fails the test too, so the list cannot rot.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "soundctm"

FACTORIES = frozenset({"randn", "rand", "zeros", "ones", "empty", "full", "arange", "linspace", "tensor"})
DRAWS = frozenset({"prior_noise", "randn", "rand"})
DEVICE_PARAMS = frozenset({"device", "model", "models", "student", "teacher", "net", "vae", "module"})

# (file relative to the repository, function qualname, called name) -> why the CPU is right there.
ALLOWED = {
    ("soundctm/ctm.py", "draw_tus", "arange"):
        "solver-length weights over grid indices: CPU float64 bookkeeping, indices are gathered on the CPU",
    ("soundctm/ctm.py", "draw_tus", "rand"):
        "per-example CPU generators (the replayable-draws policy); DistillDraws.to(device) moves every draw",
    ("soundctm/ctm.py", "draw_distill", "rand"): "per-example CPU generators; moved by DistillDraws.to(device)",
    ("soundctm/ctm.py", "draw_distill", "randn"): "per-example CPU generators; moved by DistillDraws.to(device)",
    ("soundctm/cd.py", "draw_cd", "rand"): "per-example CPU generators; moved by CDDraws.to(device)",
    ("soundctm/cd.py", "draw_cd", "randn"): "per-example CPU generators; moved by CDDraws.to(device)",
    ("soundctm/nn/vae.py", "AudioAutoencoder.fit_normalisation", "zeros"):
        "float64 running sums on the CPU (the latents are moved there); the result is copied to the buffers' device",
    ("soundctm/train/data.py", "build_conditioned", "tensor"):
        "the dataset's index tensor lives on the CPU; the loader moves each batch",
    ("soundctm/train/text.py", "train_clap", "rand"):
        "drawn from the CPU generator `g` of the tiny CLAP's CPU training",
}


def _callee(call: ast.Call) -> str | None:
    f = call.func
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in ("torch", "th"):
        return f.attr if f.attr in FACTORIES else None
    if isinstance(f, ast.Name) and f.id in DRAWS:
        return f.id
    return None


def _own_nodes(fn: ast.AST):
    """Nodes of a function's body, not descending into nested functions / classes / lambdas."""
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        yield n
        stack.extend(ast.iter_child_nodes(n))


def has_device_in_scope(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    a = fn.args
    for arg in a.posonlyargs + a.args + a.kwonlyargs:
        if arg.arg in DEVICE_PARAMS:
            return True
        if arg.annotation is not None and re.search(r"Tensor|Module", ast.unparse(arg.annotation)):
            return True
    return any((isinstance(n, ast.Name) and n.id == "device") or (isinstance(n, ast.Attribute) and n.attr == "device")
               for n in _own_nodes(fn))


def _under_device_context(fn: ast.AST) -> set[int]:
    """ids of the nodes inside `with torch.device(...):` blocks of a function's own body."""
    inside = set()
    for n in _own_nodes(fn):
        if isinstance(n, ast.With) and any(
                isinstance(it.context_expr, ast.Call) and isinstance(it.context_expr.func, ast.Attribute)
                and it.context_expr.func.attr == "device" and isinstance(it.context_expr.func.value, ast.Name)
                and it.context_expr.func.value.id in ("torch", "th") for it in n.items):
            for b in n.body:
                inside |= {id(x) for x in ast.walk(b)}
    return inside


def violations(source: str, filename: str = "<string>") -> list[tuple[str, str, int, str]]:
    """(filename, function qualname, line, called name) of every violation of the rule in `source`."""
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for n in ast.iter_child_nodes(node):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                q = prefix + n.name
                if has_device_in_scope(n):
                    placed = _under_device_context(n)
                    for c in _own_nodes(n):
                        if isinstance(c, ast.Call) and (name := _callee(c)) is not None and id(c) not in placed \
                                and not any(k.arg in ("device", None) for k in c.keywords):
                            out.append((filename, q, c.lineno, name))
                visit(n, q + ".")
            elif isinstance(n, ast.ClassDef):
                visit(n, prefix + n.name + ".")
            else:
                visit(n, prefix)

    visit(ast.parse(source, filename), "")
    return sorted(out, key=lambda v: (v[0], v[2]))


def package_violations() -> list[tuple[str, str, int, str]]:
    out = []
    for f in sorted(PKG.rglob("*.py")):
        out += violations(f.read_text(), str(f.relative_to(ROOT)))
    return out


# ----------------------------------------------------------------------------------------------


def test_package_creates_tensors_on_the_models_device():
    bad = [v for v in package_violations() if v[:2] + v[3:] not in ALLOWED]
    assert not bad, "tensors created without device= where a device is in scope:\n" + "\n".join(
        f"  {f}:{line} in {q}: {name}(...)" for f, q, line, name in bad)


def test_allow_list_has_no_stale_entries():
    found = {v[:2] + v[3:] for v in package_violations()}
    stale = sorted(set(ALLOWED) - found)
    assert not stale, f"ALLOWED entries that match nothing any more (remove them): {stale}"


PLANTED = textwrap.dedent('''
    import torch
    from soundctm.rng import prior_noise

    def bad_tensor_param(z: torch.Tensor):
        return z + torch.zeros(3)                      # violation: z's device is known

    def bad_model_param(model, seeds):
        return prior_noise(seeds, (4, 8))              # violation: z_T off the model's device

    def bad_reads_device(x):
        d = x.device
        return torch.arange(5), d                      # violation: reads .device, creates on the default

    class Sampler:
        def step(self, student, z):
            return torch.randn(z.shape)                # violation (method, `student` parameter)

    def good(z: torch.Tensor):
        return torch.zeros(3, device=z.device), torch.ones(2, **{"device": z.device})

    def good_in_a_device_block(device):
        with torch.device(device):
            a = torch.ones(3)
        return a, torch.zeros(2)                       # violation: after the block

    def no_device_known(n: int):
        return torch.linspace(0, 1, n)                 # not checked: nothing says where it should live

    def outer(model):
        def inner(n):
            return torch.zeros(n)                      # judged on its own: no device in scope
        return inner
''')


def test_a_planted_violation_is_found():
    got = {(q, name) for _, q, _, name in violations(PLANTED)}
    assert got == {("bad_tensor_param", "zeros"), ("bad_model_param", "prior_noise"),
                   ("bad_reads_device", "arange"), ("Sampler.step", "randn"), ("good_in_a_device_block", "zeros")}


def test_a_planted_violation_in_the_package_fails_the_check(tmp_path):
    """The package walk itself (not just the string checker) reports a violation written into a copy of a
    package file."""
    src = (PKG / "sampling.py").read_text()
    planted = src.replace("    seeds = list(seeds)\n    out = []\n",
                          "    seeds = list(seeds)\n    out = [torch.zeros(1)]\n    out = []\n", 1)
    assert planted != src
    assert not violations(src, "sampling.py")
    assert [(q, name) for _, q, _, name in violations(planted, "sampling.py")] == [("sample_seeded", "zeros")]
