"""The house (issue 25): every module under ec2dbn/ lives on one floor, and imports only from its own floor
or the floors below it — imports inside functions included, since a lazy import is still an arrow. Folders
import each other in no circle, and no module imports itself back through others (bench/plots included).

Read from the source with `ast`, so the test holds for any module, imported by the suite or not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ec2dbn"

#: Floors from the ground up. The flat leaves are ground: what every floor may use.
FLOORS = ("", "spec", "insight", "aws", "ssh", "stack", "run", "sweep", "bake", "cli")

#: The only modules that stand flat in ec2dbn/ (shared leaves), `__main__` aside: it is the CLI's door.
FLAT = {"__init__", "__main__", "errors", "events", "package_data", "untrusted_json", "results_layout"}

MAX_FLAT = 8
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    """Dotted module name → file, for every .py under ec2dbn/ (data folders hold none)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The ec2dbn modules `name` imports anywhere in its text (top level, functions, TYPE_CHECKING blocks):
    `from ec2dbn.x import y` is an arrow to ec2dbn.x.y when that is a module, else to ec2dbn.x."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "ec2dbn")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "ec2dbn":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def floor_of(module: str) -> int:
    """The floor's height: 0 for the flat leaves, else the folder's place in FLOORS; `__main__` is the
    CLI's (it only calls it)."""
    folder = _folder(module)
    assert folder in FLOORS, f"{module}: folder {folder!r} is no floor of the house (add it to FLOORS)"
    return FLOORS.index(folder)


def _folder(module: str) -> str:
    """The folder a module lives in ("" for the flat ones); a folder's __init__ lives in its folder, and
    `__main__` in cli/ (it only calls the CLI: `python -m ec2dbn`)."""
    if module == "ec2dbn.__main__":
        return "cli"
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and MODULES[module].name == "__init__.py"):
        return parts[1]
    return ""


def test_the_graph_is_read_from_every_module() -> None:
    # The parse sees what it should: a lazy import inside a function, and a relative one.
    assert "ec2dbn.run.pipeline" in GRAPH["ec2dbn.sweep.on_ec2"]  # imported inside a method
    assert len(MODULES) > 80 and all(GRAPH[m] <= set(MODULES) | {"ec2dbn"} for m in GRAPH)


def test_at_most_eight_modules_stand_flat_and_each_is_a_shared_leaf() -> None:
    flat = {p.stem for p in PACKAGE.glob("*.py")}
    assert len(flat) <= MAX_FLAT, sorted(flat)
    assert flat <= FLAT, sorted(flat - FLAT)
    # A shared leaf leans on nothing above the ground.
    for name in flat - {"__main__"}:
        module = "ec2dbn" if name == "__init__" else f"ec2dbn.{name}"
        assert all(floor_of(t) == 0 for t in GRAPH[module]), (module, GRAPH[module])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_arrow_runs_up_a_floor(module: str) -> None:
    up = sorted(t for t in GRAPH[module] if floor_of(t) > floor_of(module))
    assert not up, f"{module} (floor {FLOORS[floor_of(module)] or 'ground'}) imports from above: {up}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle in `graph`, as the path that closes it, or None (depth-first, colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in colour and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour and (found := visit(node)):
            return found
    return None


def test_no_circle_between_folders() -> None:
    folders: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        folders.setdefault(_folder(module), set()).update(
            _folder(t) for t in targets if _folder(t) != _folder(module)
        )
    assert _cycle(folders) is None


def test_no_circle_between_modules() -> None:
    # A package's __init__ is its face: an arrow to it is an arrow to the module it names, not a circle.
    graph = {m: {t for t in ts if t not in ("ec2dbn",)} for m, ts in GRAPH.items()}
    assert _cycle(graph) is None


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_floor_check_catches_an_arrow_up() -> None:
    assert floor_of("ec2dbn.aws.bakes") < floor_of("ec2dbn.bake.pipeline")
    assert floor_of("ec2dbn.errors") == 0 and floor_of("ec2dbn.__main__") == FLOORS.index("cli")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_450_lines(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module}: {lines} lines"


def test_the_aws_face_names_verbs_that_resolve_and_shadow_no_module() -> None:
    import ec2dbn.aws as face

    modules = {p.stem for p in (PACKAGE / "aws").glob("*.py")}
    # A face name equal to a submodule's would be replaced by that module once it is imported.
    assert not set(face.__all__) & modules, set(face.__all__) & modules
    for name in face.__all__:
        assert getattr(face, name) is not None, name
    with pytest.raises(AttributeError):
        face.no_such_verb  # noqa: B018
