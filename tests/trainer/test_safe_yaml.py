"""The one YAML loader for job and stack files: hostile documents are one line, refused before they grow.

Each hostile document is refused on its *shape* (alias expansion, a cycle, the nesting depth, the size),
before anything is constructed from it, so the time it takes does not depend on what the document would
expand to. The CLI-level checks (exit code 2, nothing created) are in tests/aws/test_bad_input_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import load_job
from trainer.errors import JobError
from trainer.safe_yaml import MAX_BYTES, MAX_DEPTH, MAX_NODES, YamlError, load_yaml, read_yaml_file


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb as one flow sequence: level i holds 9 aliases of level i-1, so the last of
    9 levels stands for 9**9 (387 million) strings."""
    items = ['&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        items.append(f"&a{i} [{','.join([f'*a{i - 1}'] * 9)}]")
    return "[" + ", ".join(items) + "]"


def bomb_job(where: str) -> str:
    """A job whose `where` section (model.layers or run) is an alias bomb of ~600 bytes."""
    if where == "run":
        return f"data: {{name: digits}}\nmodel: {{layers: [64, 10]}}\nrun: {billion_laughs()}\n"
    return f"data: {{name: digits}}\nmodel:\n  layers: {billion_laughs()}\n"


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text, text
    return text


@pytest.mark.parametrize("where", ["model.layers", "run"])
def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path: Path, where: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(bomb_job(where))
    assert len(path.read_bytes()) < 800
    with pytest.raises(JobError) as err:
        load_job(path)
    msg = one_line(err.value)
    assert msg.startswith(f"{path}:") and f"more than {MAX_NODES:,} values" in msg and "alias" in msg


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [*a]",  # a sequence that contains itself
        "a: &a {b: *a}",  # a mapping that contains itself
        "a: &a {b: [1, {c: *a}]}",  # the same, two levels down
    ],
)
def test_a_recursive_alias_is_refused(text: str) -> None:
    with pytest.raises(YamlError) as err:
        load_yaml(text, "job.yaml")
    assert "contains itself" in one_line(err.value)


def test_deep_nesting_is_refused_without_recursing() -> None:
    deep = "x: " + "[" * 30_000 + "]" * 30_000  # inside the size limit, far past Python's recursion limit
    with pytest.raises(YamlError) as err:
        load_yaml(deep, "job.yaml")
    assert f"nested deeper than {MAX_DEPTH} levels" in one_line(err.value)
    nested = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)  # just inside: the document itself is a level
    assert load_yaml(nested, "job.yaml") is not None


def test_the_issues_200k_deep_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("x: " + "[" * 200_000 + "]" * 200_000)
    with pytest.raises(JobError) as err:
        load_job(path)
    assert one_line(err.value).startswith(f"{path}: larger than")


def test_shared_aliases_within_the_limit_still_work() -> None:
    doc = load_yaml("rates: &r [0.1, 0.2]\nmodel: {learn_rates: *r, l2_costs: 1e-4}\n", "job.yaml")
    assert doc["model"]["learn_rates"] == [0.1, 0.2]
    assert doc["model"]["l2_costs"] == 1e-4  # YAML 1.2 exponents are floats, as people write them


def test_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a: " + "x" * MAX_BYTES + "\n")
    with pytest.raises(YamlError) as err:
        read_yaml_file(path, "job file")
    assert f"larger than {MAX_BYTES // 1024} KiB" in one_line(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: " + "9" * 5000, "cannot read a value"),  # past Python's int-from-text digit limit
        ("a: 2020-13-45", "cannot read a value"),  # a timestamp that is no date
        ("a: 1\n---\nb: 2\n", "expected a single document"),
        ("a: [1, 2", "invalid YAML"),
        ("a: !!python/object:os.system {}", "invalid YAML"),
        ("{[1]: 2}", "invalid YAML"),  # an unhashable key
        ("a: *nothing", "invalid YAML"),
        ("a: \x00", "invalid YAML"),
    ],
)
def test_every_malformed_document_is_one_yaml_error(text: str, expected: str) -> None:
    with pytest.raises(YamlError) as err:
        load_yaml(text, "f.yaml")
    msg = one_line(err.value)
    assert msg.startswith("f.yaml") and expected in msg, msg


def test_unreadable_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(YamlError, match="cannot read the stack file"):
        read_yaml_file(tmp_path / "missing.yaml", "stack file")
    (tmp_path / "bin.yaml").write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(YamlError, match="cannot read the stack file"):
        read_yaml_file(tmp_path / "bin.yaml", "stack file")
