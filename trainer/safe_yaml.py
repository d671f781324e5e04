"""The one YAML loader for files a person hands us (job files here; ec2dbn's stack files too).

PyYAML's SafeLoader builds no arbitrary objects, but it trusts a document's *shape*: a 600-byte "billion
laughs" (9 levels of 9 aliases) stands for 387 million strings that any code walking the result then
visits; `&a [*a]` is a list that contains itself; 200,000 nested brackets exhaust Python's recursion
limit in the composer. So the document is composed into PyYAML's node graph first, with the nesting depth
counted as it is built, and that graph is measured before anything is constructed from it:

- nesting deeper than MAX_DEPTH levels is refused while composing (before the composer recurses further);
- an alias that points at a node containing it (a cycle) is refused;
- a document that expands to more than MAX_NODES values, each alias counted as the whole subtree it
  repeats, is refused — the measure is computed once per node (memoised), so a bomb costs a few
  hundred steps to detect, not 387 million;
- files larger than MAX_BYTES are refused unread.

Job and stack files are a few dozen values and a few hundred bytes, so these limits only ever meet
hostile or broken input. Plain scalars that look like `1e-4` read as floats (YAML 1.2), as people write
learning rates. Every failure is one `YamlError` line that starts with the file and, when known,
`line:column`. Standard library and PyYAML only: trainer/ is shipped alone and refuses the same files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, SequenceNode

from trainer.errors import printable

#: Largest file read (bytes). Jobs and stacks are under 2 KiB.
MAX_BYTES = 64 * 1024
#: Deepest nesting of sequences and mappings (the document's top level is 1). Jobs nest 3 levels.
MAX_DEPTH = 32
#: Most values a document may expand to, aliases expanded (a value: a scalar, a sequence or a mapping).
MAX_NODES = 10_000


class YamlError(ValueError):
    """A YAML file that cannot be used: unreadable, too large, malformed or hostile. One line."""


class SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that counts nesting while composing and reads `1e-4` as a float."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self._depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))\Z""",
        re.X,
    ),
    list("-+0123456789."),
)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _refuse(source: str, node: Node, problem: str) -> YamlError:
    mark = node.start_mark
    return YamlError(f"{source}:{mark.line + 1}:{mark.column + 1}: refused: {problem}")


def check_graph(root: Node, source: str) -> None:
    """Refuse a composed document that contains itself or expands to more than MAX_NODES values.

    An iterative depth-first walk: `expanded[id]` is a finished node's size with aliases expanded;
    `open_` holds the nodes on the current path, so meeting one of them again is a cycle.
    """
    expanded: dict[int, int] = {}
    open_: set[int] = set()
    todo: list[tuple[Node, bool]] = [(root, False)]
    while todo:
        node, finished = todo.pop()
        key = id(node)
        if finished:
            open_.discard(key)
            expanded[key] = 1 + sum(expanded[id(child)] for child in _children(node))
            if expanded[key] > MAX_NODES:
                raise _refuse(
                    source,
                    node,
                    f"this expands to more than {MAX_NODES:,} values (each alias repeats what it points "
                    "to); write the values out without aliases",
                )
            continue
        if key in expanded:
            continue
        open_.add(key)
        todo.append((node, True))
        for child in _children(node):
            if id(child) in open_:
                raise _refuse(source, child, "an alias here points at a node that contains itself")
            if id(child) not in expanded:
                todo.append((child, False))


def load_yaml(text: str, source: str) -> Any:
    """The one document in `text`, checked as described above. `source` names it in messages (a path)."""
    source = printable(source)
    if len(text) > MAX_BYTES:
        raise YamlError(f"{source}: larger than {MAX_BYTES // 1024} KiB; a job or stack file is a few lines")
    try:
        return _load(text, source)
    except YamlError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        what = ", ".join(str(part) for part in (exc.context, exc.problem) if part) or "malformed YAML"
        what = " ".join(what.split())
        raise YamlError(f"{where}: invalid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # int() past its digit limit, a 13th month, ...
        raise YamlError(f"{source}: cannot read a value: {' '.join(str(exc).split())}") from None


def _load(text: str, source: str) -> Any:
    loader = SafeLoader(text)  # the reader already refuses control characters here
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        check_graph(root, source)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path, what: str) -> Any:
    """Read and load a YAML file (`what` names it: "job file", "stack file"). Raises YamlError."""
    path = Path(path)
    shown = printable(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise YamlError(f"{shown}: cannot read the {what}: {reason}") from None
    if len(raw) > MAX_BYTES:
        raise YamlError(f"{shown}: larger than {MAX_BYTES // 1024} KiB; a {what} is a few lines")
    return load_yaml(text, str(path))
