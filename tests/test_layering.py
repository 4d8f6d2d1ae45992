"""The import graph reads one way (design.md §4): each part imports only parts below it, and no
two modules import each other, directly or through others. Imports inside functions count:
a lazy import is still a dependency."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import csrinfer

PACKAGE = Path(csrinfer.__file__).parent

# Bottom to top. A part may import itself and anything listed before it.
LAYERS = [
    "errors", "atomic", "_lazy", "coco_classes", "config", "boxes", "devices", "tensorrt_env",
    "image_io", "letterbox", "contract", "data", "model", "plugins", "export", "convert", "train", "runtime",
    "apps", "serve", "cli", "__main__",
]


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """csrinfer modules that ``path`` imports (``from csrinfer.x import y`` names ``csrinfer.x.y``
    when that is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("csrinfer."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("csrinfer"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in known else node.module)
    return {m for m in out if m in known or m.removesuffix(".__init__") in known}


def part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods) | {m.removesuffix(".__init__") for m in mods}
    canon = lambda m: m if m in mods else f"{m}.__init__"  # noqa: E731
    return {m: {canon(t) for t in imports_of(p, known)} - {m} for m, p in mods.items()}


def test_every_part_is_placed_in_a_layer():
    unplaced = {part(m) for m in graph()} - set(LAYERS) - {"__init__"}
    assert not unplaced, f"parts missing from LAYERS: {sorted(unplaced)}"


def test_no_part_imports_a_part_above_it():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [f"{m} -> {t}" for m, targets in graph().items() if part(m) in rank
              for t in targets if part(t) in rank and rank[part(t)] > rank[part(m)]]
    assert not upward, "imports that run upward:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    g = graph()
    g.pop("csrinfer.__init__", None)  # the package face maps names lazily, it is imported by none
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for t in sorted(g.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_contract_imports_neither_torch_nor_opencv():
    for path in (PACKAGE / "contract").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & {"torch", "cv2", "onnx", "tensorrt"}, path.name


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The graph is read from the source: a lazy import of the runtime from the model is caught."""
    fake = tmp_path / "csrinfer"
    for sub in ("model", "runtime"):
        (fake / sub).mkdir(parents=True)
        (fake / sub / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "model" / "net.py").write_text("def f():\n    from csrinfer.runtime import seg\n")
    (fake / "runtime" / "seg.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert "csrinfer.runtime.seg" in graph()["csrinfer.model.net"]
