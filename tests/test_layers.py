"""The rooms of the package and their one-way flow (docs/ARCHITECTURE.md), read from the source: no module imports
a room to its right, and no module imports, even inside a function, one that imports it back. Imports under
``if TYPE_CHECKING:`` are annotations only and do not count."""

import ast
from collections import defaultdict
from pathlib import Path

import grnformer

SRC = Path(grnformer.__file__).parent
# Left to right; a module may import its own room and rooms to its left.
ROOMS = ["under", "data", "model", "interop", "bundle", "train", "inference", "tasks", "networks", "bench", "top"]
UNDER = {"grnformer.errors", "grnformer.atomic", "grnformer.edge_metrics"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(("grnformer", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        out[name] = path
    return out


def _room(module: str) -> str:
    if module in UNDER:
        return "under"
    part = module.split(".")[1] if "." in module else "top"
    return part if part in ROOMS else "top"


def _imports(modules: dict[str, Path], annotations: bool = False) -> dict[str, set[str]]:
    """Every grnformer module each module imports (top level or in a function), TYPE_CHECKING blocks left out
    unless ``annotations``."""
    def owner(target: str) -> str | None:
        while target not in modules and "." in target:
            target = target.rsplit(".", 1)[0]
        return target if target in modules and target != "grnformer" else None  # the root: __version__ only

    graph = defaultdict(set)
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip = set() if annotations else {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                                          and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("grnformer"):
                targets = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("grnformer")]
            else:
                continue
            graph[name] |= {t for t in map(owner, targets) if t and t != name}
    return graph


def test_the_rooms_exist():
    rooms = {m.split(".")[1] for m in _modules() if m.count(".") >= 2}
    assert {"data", "model", "train", "inference", "tasks", "networks", "bench"} <= rooms
    wings = {m.split(".")[2] for m in _modules() if m.startswith("grnformer.data.") and m.count(".") >= 3}
    assert wings == {"input", "corpus"}


def test_no_module_imports_a_room_to_its_right():
    graph = _imports(_modules())
    upward = sorted(f"{a} -> {b}" for a, bs in graph.items() for b in bs
                    if a != "grnformer" and ROOMS.index(_room(b)) > ROOMS.index(_room(a)))
    assert not upward, upward


def test_no_import_circle():
    graph = _imports(_modules())
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for module in sorted(_modules()):
        if module not in state:
            assert (cycle := visit(module)) is None, " -> ".join(cycle)


# Adapting a model to a user's cells is training: `tasks.adapt` is the one door from zero-shot code to `train`.
TRAINING_DOOR = "grnformer.tasks.adapt"
ZERO_SHOT_ROOMS = ("inference", "tasks", "networks", "bench")


def test_zero_shot_code_reads_bundles_without_the_training_room():
    graph = _imports(_modules())
    reached: dict[str, list[str]] = {}
    for start in sorted(m for m in _modules() if _room(m) in ZERO_SHOT_ROOMS and m != TRAINING_DOOR):
        seen, todo = {start}, [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen and nxt != TRAINING_DOOR:
                    seen.add(nxt)
                    todo.append(nxt)
        if hits := sorted(m for m in seen if _room(m) == "train"):
            reached[start] = hits
    assert not reached, reached
    assert _room("grnformer.bundle.checkpoint") == "bundle"



def test_the_method_registry_is_in_no_import_circle_even_for_annotations():
    """`networks.methods` declares the methods; `grn` and the dispatcher run them. Nothing the registry imports
    reaches back to it, annotation-only imports included (what a method's form reads is the registry's own
    protocol, `MethodInputs`), and the entry point `grn` and the registry do not import each other."""
    graph = _imports(_modules(), annotations=True)
    registry, entry = "grnformer.networks.methods", "grnformer.networks.grn"
    seen, todo = set(), [registry]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert registry not in seen and entry not in seen, sorted(seen)
    assert registry not in graph[entry]
