"""The package is one-way: no import cycles and no upward imports between its layers.

The layers are the `[tool.importlinter]` layers contract in pyproject.toml (highest first; `|`
separates independent siblings, `:` siblings that may import each other, `(name)` a layer that may be
absent). This test reads that contract and checks it with its own AST import graph (every `import`
and `from ... import`, at module level or inside functions, plus `import_module("soundctm...")`
calls with a literal name), so it needs nothing installed; when import-linter is installed it also
runs `lint-imports` on the same contract. Both are shown to fail on a deliberate cycle and on a
deliberate upward import.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# the checker


def module_names(pkg_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package rooted at `pkg_dir`."""
    out = {}
    for f in sorted(pkg_dir.rglob("*.py")):
        parts = list(f.relative_to(pkg_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that `name` (a module or module.attribute) refers to."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(pkg_dir: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in its source)."""
    modules = module_names(pkg_dir)
    root = pkg_dir.name
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
                  == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)):
                targets = [node.args[0].value]
            for t in targets:
                if t == root or t.startswith(root + "."):
                    r = _resolve(t, modules)
                    if r is not None and r != mod and not mod.startswith(r + "."):  # a package's own parents
                        graph[mod].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def parse_layers(layers: list[str]) -> list[list[tuple[str, bool, bool]]]:
    """The contract's layers, highest first: per layer, (module, optional, independent-of-siblings)."""
    out = []
    for layer in layers:
        independent = "|" in layer
        parts = [p.strip() for p in layer.replace("|", ":").split(":") if p.strip()]
        out.append([(p.strip("()"), p.startswith("("), independent) for p in parts])
    return out


def layer_violations(graph: dict[str, set[str]], layers: list[str]) -> list[str]:
    """Imports from a lower layer to a higher one, or between independent siblings."""
    parsed = parse_layers(layers)

    def where(mod: str):
        for i, layer in enumerate(parsed):
            for j, (name, _, indep) in enumerate(layer):
                if mod == name or mod.startswith(name + "."):
                    return i, j, name, indep
        return None

    bad = []
    for a, targets in sorted(graph.items()):
        la = where(a)
        for b in sorted(targets):
            lb = where(b)
            if la is None or lb is None or la[2] == lb[2]:
                continue
            if lb[0] < la[0]:
                bad.append(f"{a} -> {b}: layer {la[2]} imports the higher layer {lb[2]}")
            elif lb[0] == la[0] and la[3]:
                bad.append(f"{a} -> {b}: independent siblings {la[2]} and {lb[2]}")
    return bad


def unlisted(graph: dict[str, set[str]], layers: list[str], root: str) -> list[str]:
    """Modules of the package that belong to no layer (every module must have its place)."""
    names = [n for layer in parse_layers(layers) for n, _, _ in layer]
    return sorted(m for m in graph if m != root and not any(m == n or m.startswith(n + ".") for n in names))


def check(pkg_dir: Path, layers: list[str]) -> list[str]:
    """Every problem: cycles, upward / sibling imports, modules outside the layers."""
    graph = import_graph(pkg_dir)
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    problems += layer_violations(graph, layers)
    problems += [f"{m}: in no layer of the contract" for m in unlisted(graph, layers, pkg_dir.name)]
    return problems


def contract() -> dict:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in cfg["contracts"] if c["type"] == "layers"]
    return {"root": cfg["root_package"], **layers}


# ----------------------------------------------------------------------------------------------
# the package


def test_soundctm_has_no_cycles_and_no_upward_imports():
    c = contract()
    problems = check(ROOT / c["root"], c["layers"])
    assert not problems, "the one-way package is broken:\n" + "\n".join(problems)


# Modules being written while the package was made one-way; their authors hoist their imports and
# empty this list (the layers contract above already covers them).
PENDING = ()


def test_in_function_imports_are_only_for_optional_packages():
    """Imports of soundctm inside functions were there to dodge cycles; none is left (in-function
    imports remain only for optional heavy packages: ray, transformers, hear21passt, laion-clap)."""
    found = []
    for path in sorted((ROOT / "soundctm").rglob("*.py")):
        if str(path.relative_to(ROOT)).startswith(PENDING):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.ImportFrom) and (sub.level or (sub.module or "").startswith("soundctm")):
                        found.append(f"{path.relative_to(ROOT)}:{sub.lineno}")
                    elif isinstance(sub, ast.Import) and any(a.name.startswith("soundctm") for a in sub.names):
                        found.append(f"{path.relative_to(ROOT)}:{sub.lineno}")
    assert not found, "in-function imports of soundctm: " + ", ".join(sorted(set(found)))


# ----------------------------------------------------------------------------------------------
# the checks fail when they should: a deliberate cycle, a deliberate upward import

TOY_LAYERS = ["toy.top", "toy.left | toy.right", "toy.base : toy.util"]


def _toy(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "toy"
    for name, src in {"__init__.py": "", "top.py": "import toy.left\nimport toy.right\n",
                      "left.py": "from toy import base\n", "right.py": "from toy.base import f\n",
                      "base.py": "def f():\n    return 1\n", "util.py": "", **files}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(textwrap.dedent(src))
    return pkg


def test_checker_passes_a_one_way_toy_package(tmp_path):
    assert check(_toy(tmp_path, {}), TOY_LAYERS) == []


def test_checker_reports_a_deliberate_cycle(tmp_path):
    # base <-> util share a ':' layer, so only the cycle check can see this one
    pkg = _toy(tmp_path, {"base.py": "from toy.util import g\n\ndef f():\n    return g()\n",
                          "util.py": "def g():\n    from toy.base import f  # hidden in a function\n    return 1\n"})
    problems = check(pkg, TOY_LAYERS)
    assert problems == ["import cycle: toy.base <-> toy.util"]


def test_checker_reports_upward_and_sibling_imports(tmp_path):
    pkg = _toy(tmp_path, {"base.py": "import importlib\n\ndef f():\n    return importlib.import_module('toy.top')\n",
                          "left.py": "from toy import base, right\n"})
    problems = check(pkg, TOY_LAYERS)
    assert "toy.base -> toy.top: layer toy.base imports the higher layer toy.top" in problems
    assert "toy.left -> toy.right: independent siblings toy.left and toy.right" in problems
    assert any(p.startswith("import cycle: toy.base") for p in problems)


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is not installed")
def test_lint_imports_passes_and_fails_on_a_deliberate_cycle(tmp_path):
    ok = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]
    # the same kind of contract over a toy package with an upward import (a cycle across layers)
    pkg = _toy(tmp_path, {"base.py": "def f():\n    import toy.left\n    return 1\n"})
    cfg = tmp_path / ".importlinter"
    cfg.write_text("[importlinter]\nroot_package = toy\n\n[importlinter:contract:layers]\nname = toy layers\n"
                   "type = layers\nlayers =\n" + "".join(f"    {line}\n" for line in TOY_LAYERS))
    bad = subprocess.run(["lint-imports", "--config", str(cfg)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env={"PYTHONPATH": str(pkg.parent), "PATH": str(Path(sys.executable).parent)})
    assert bad.returncode != 0 and "toy.base" in bad.stdout and "toy.left" in bad.stdout, bad.stdout + bad.stderr
