"""The layer rule, read from the source: building blocks never import the run engine or the tuner, nothing under
`pipeline/` imports `tune/`, no module imports another package's private (`_`-prefixed) names, and every
package's `__init__` states its public names (`__all__`)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "atalaia"
BLOCKS = ("data", "models", "compress", "deploy", "evaluate", "report", "face")
APPLICATIONS = {"face/access.py"}  # reads a finished run (RunFolder); not a building block of a run


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import in the file, at any depth (function-level ones included)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


def _files():
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else ""


def test_building_blocks_never_import_pipeline_or_tune():
    bad = []
    for f in _files():
        rel = f.relative_to(SRC).as_posix()
        if _package(f) in BLOCKS and rel not in APPLICATIONS:
            bad += [f"{rel}: {m}" for m, _ in _imports(f) if m.startswith(("atalaia.pipeline", "atalaia.tune"))]
    assert not bad, bad


def test_pipeline_never_imports_tune():
    bad = [f"{f.relative_to(SRC)}: {m}" for f in _files() if _package(f) == "pipeline"
           for m, _ in _imports(f) if m.startswith("atalaia.tune")]
    assert not bad, bad


def test_no_private_names_imported_across_packages():
    bad = []
    for f in _files():
        for module, names in _imports(f):
            if not module.startswith("atalaia."):
                continue
            other = module.split(".")[1] if module.count(".") >= 1 else ""
            private = [n for n in names if n.startswith("_") and n != "__version__" and n != "__all__"]
            if private and other != _package(f):
                bad.append(f"{f.relative_to(SRC)} imports {private} from {module}")
    assert not bad, bad


def test_every_package_states_its_public_names():
    missing = [p.relative_to(SRC).as_posix() for p in SRC.rglob("__init__.py") if "__all__" not in p.read_text()]
    assert not missing, missing


def test_the_rule_would_catch_a_violation(tmp_path):
    """The checks above parse imports at any depth: a lazy import inside a function counts too."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from atalaia.pipeline.runfolder import RunFolder\n    from atalaia.deploy.tflite import _root\n")
    assert _imports(f) == [("atalaia.pipeline.runfolder", ["RunFolder"]), ("atalaia.deploy.tflite", ["_root"])]
