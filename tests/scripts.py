"""Load a script of the repository (reproduce/, bench/) as a module (the tables' declarations are the package's:
`soundctm.experiments.tables`)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPRO = ROOT / "reproduce"


def load_script(script, name: str | None = None):
    """The module of `script`: a reproduce/ script's name ("table3") or a path to any script."""
    path = Path(script) if isinstance(script, Path) or "/" in str(script) else REPRO / f"{script}.py"
    spec = importlib.util.spec_from_file_location(name or f"repro_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
