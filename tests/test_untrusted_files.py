"""Files from the instance, and results folders, are untrusted: whatever they hold — a list, `{}`, half a
file, a huge one, nesting a hundred thousand deep, a string where a number belongs — the reader says what
is wrong with which file in one line, or shows what it can; never a traceback.

Every reader is run on every malformation (and, field by field, on a real trainer's metrics.json and a
real run.json with each value replaced by each odd value), so a new reader or a new field is covered too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ec2dbn.cli import main
from ec2dbn.errors import ConfigError
from ec2dbn.events import RecordingReporter
from ec2dbn.insight import bench as bench_mod
from ec2dbn.insight import bench_plot, plots
from ec2dbn.insight.report import build_report, cells, to_markdown
from ec2dbn.run import instance_files
from ec2dbn.run.instance_files import RemoteRun
from ec2dbn.run.results import RunRecord
from ec2dbn.untrusted_json import MAX_JSON_BYTES
from tests.support.trained_runs import digits_runs
from trainer.contract import INTERRUPTION_FILE

__all__ = ["digits_runs"]

#: Whole-file malformations, and the words the one-line error must contain (None: it is read, not refused).
MALFORMED: dict[str, tuple[bytes, str | None]] = {
    "a list": (b"[1, 2, 3]", "expected a JSON object, found a list"),
    "a string": (b'"finished"', "expected a JSON object, found a string"),
    "null": (b"null", "found null"),
    "empty": (b"", "not valid JSON"),
    "truncated": (b'{"status": "finished", "epochs": [{"epoch": 1, "loss": 0.5', "not valid JSON"),
    "deeply nested list": (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    "deeply nested object": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    "not UTF-8": (b'{"device": "\xff\xfe cpu"}', "not UTF-8"),
    "a 5,000-digit number": (b'{"epochs": ' + b"9" * 5000 + b"}", "not valid JSON"),
    "huge": (b'{"pad": "' + b"x" * (MAX_JSON_BYTES + 10) + b'"}', "too large"),
    "{}": (b"{}", None),
    "NaN and Infinity": (b'{"test_accuracy": NaN, "epochs": [{"epoch": 1, "seconds": Infinity}]}', None),
    "wrong types": (
        b'{"status": ["x"], "epochs": 5, "device": {"a": 1}, "backend": [1], "test_accuracy": true,'
        b' "config": {"model": {"layers": "abc"}, "data": []}, "data": 7, "rows": {"a": 1},'
        b' "kind": 3, "run_id": {}, "remote_dir": [], "phases": "x", "recoveries": 1}',
        None,
    ),
    "odd epochs": (
        b'{"epochs": [1, "x", null, {"epoch": "one", "loss": "0.5", "seconds": -3},'
        b' {"epoch": 1e400, "loss": 0.5, "err": 0.1, "seconds": 1e400},'
        b' {"epoch": -2, "loss": 1e308, "err": 2, "seconds": 0}]}',
        None,
    ),
}

#: Values put in place of each field of a real file, one at a time.
ODD: list[Any] = [None, True, -1, 0, 1e308, 10**30, "", "x", "[/] \x1b[2J", [], {}, [[1]], {"a": {"b": []}}]


def _write(folder: Path, name: str, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return folder


def _one_line_error(capsys: pytest.CaptureFixture[str], words: str, name: str) -> None:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unexpected" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert name in err and words in err, err


@pytest.fixture(params=sorted(MALFORMED), ids=lambda k: k.replace(" ", "-"))
def malformed(request: pytest.FixtureRequest) -> tuple[bytes, str | None]:
    return MALFORMED[request.param]


# ------------------------------------------------------------------------------ whole-file malformations


def test_report_on_a_malformed_metrics_json(
    malformed: tuple[bytes, str | None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, words = malformed
    run = _write(tmp_path / "run-1", "metrics.json", content)
    code = main(["report", str(run)])
    if words is None:
        out, err = capsys.readouterr()
        assert code == 0 and err == "" and "run-1" in out
        assert main(["report", str(run), "--json"]) == 0
        json.loads(capsys.readouterr().out)
    else:
        assert code == 2
        _one_line_error(capsys, words, "metrics.json")


def test_report_on_a_malformed_run_json(
    malformed: tuple[bytes, str | None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, words = malformed
    run = _write(tmp_path / "run-1", "run.json", content)
    code = main(["report", str(run), "--markdown"])
    if words is None:
        assert code == 0 and "run-1" in capsys.readouterr().out
    else:
        assert code == 2
        _one_line_error(capsys, words, "run.json")


@pytest.mark.parametrize("local", [True, False], ids=["local", "ec2"])
def test_resume_from_a_malformed_run_json(
    local: bool,
    malformed: tuple[bytes, str | None],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    content, words = malformed
    _write(tmp_path / "results" / "job-1", "run.json", content)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--resume", "job-1", *(["--local"] if local else [])]
    assert main(argv) == 2
    # `{}` and the rest are not a run's record either: the fields it needs are missing or mistyped.
    _one_line_error(capsys, words or "not a run record", "run.json")


def test_plot_of_a_malformed_metrics_json(malformed: tuple[bytes, str | None], tmp_path: Path) -> None:
    content, words = malformed
    run = _write(tmp_path / "run-1", "metrics.json", content)
    png = tmp_path / "curve.png"
    try:
        plots.plot_learning_curve(run, png)
    except ConfigError as exc:
        assert words is None or words in str(exc)
        assert "\n" not in str(exc)
    else:  # the epochs that make sense are drawn
        assert words is None and png.stat().st_size > 0


def test_bench_summary_of_a_malformed_bench_json(malformed: tuple[bytes, str | None], tmp_path: Path) -> None:
    content, _words = malformed
    folder = _write(tmp_path / "bench", bench_mod.BENCH_FILE, content)
    with pytest.raises(ConfigError) as err:
        summary = bench_mod.summarize(bench_mod.load_bench(folder), bench_mod.local_price()[0])
        bench_plot.write_outputs(folder, summary)
    assert "\n" not in str(err.value)


def test_a_malformed_interruption_json_is_no_notice_and_says_so(
    malformed: tuple[bytes, str | None], tmp_path: Path
) -> None:
    content, words = malformed
    folder = _write(tmp_path / "results", INTERRUPTION_FILE, content)
    reporter = RecordingReporter()
    assert instance_files.spot_notice(folder, reporter) is None
    if words is not None:
        (warning,) = reporter.lines("warn")
        assert INTERRUPTION_FILE in warning and words in warning


def test_a_malformed_current_run_pointer_is_one_line(
    malformed: tuple[bytes, str | None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content, words = malformed
    monkeypatch.setenv("EC2DBN_HOME", str(tmp_path / "home"))
    from ec2dbn.stack import state

    state.stack_dir("s1").mkdir(parents=True, exist_ok=True)
    (state.stack_dir("s1") / "current-run.json").write_bytes(content)
    with pytest.raises(ConfigError) as err:
        instance_files.load_pointer("s1")
    assert "current-run.json" in str(err.value) and (words or "not a run pointer") in str(err.value)


def test_a_pointer_written_by_save_pointer_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EC2DBN_HOME", str(tmp_path / "home"))
    from ec2dbn.stack import state

    state.stack_dir("s1").mkdir(parents=True, exist_ok=True)
    assert instance_files.load_pointer("s1") is None  # none yet
    run = RemoteRun("~/ec2dbn", "job-1")
    instance_files.save_pointer("s1", run, tmp_path / "results" / "job-1")
    assert instance_files.load_pointer("s1") == run


# ----------------------------------------------------------------------------------- field by field


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in `doc` (the first item of each list stands for all)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list) and doc:
        yield (*prefix, 0)
        yield from _paths(doc[0], (*prefix, 0))


def _replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def _variants(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in _paths(doc):
        for value in ODD:
            yield f"{'.'.join(map(str, path))}={value!r}", _replaced(doc, path, value)


def _survives(check: Callable[[], object], what: str) -> None:
    try:
        check()
    except ConfigError as exc:
        assert "\n" not in str(exc), what
    except Exception as exc:  # anything else is the bug this test looks for
        raise AssertionError(f"{what}: {type(exc).__name__}: {exc}") from exc


#: Figures are slow to draw, so the learning curve is drawn for the variants of the per-epoch fields
#: with a few of the odd values (one of each type); its title is checked on every variant.
PLOTTED = "epochs"
PLOTTED_ODD = {repr(v) for v in (None, True, -1, 1e308, "x", [], {})}


def test_every_field_of_a_real_metrics_and_run_json_may_be_anything(
    digits_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    record = RunRecord(run_id="r-1", job="j.yaml", mode="ec2", instance_type="g4dn.xlarge", market="spot")
    record.price_usd_per_hour, record.cost_usd, record.phases = 0.21, 0.01, {"train": 3.0}
    record.recoveries = [{"reason": "spot", "cost_usd": 0.001}]
    record.finish(0, "finished")
    record.save(tmp_path)
    real = {
        "metrics.json": json.loads((digits_runs[0] / "metrics.json").read_text()),
        "run.json": json.loads((tmp_path / "run.json").read_text()),
    }
    folder = tmp_path / "odd"
    folder.mkdir()
    for name, doc in real.items():
        for what, variant in _variants(doc):
            for other, other_doc in real.items():
                (folder / other).write_text(json.dumps(variant if other == name else other_doc))

            def report(folder: Path = folder) -> None:
                rep = build_report([folder])
                [cells(r) for r in rep.rows]
                to_markdown(rep)

            _survives(report, f"report, {name} {what}")
            if name == "run.json":
                _survives(lambda folder=folder: RunRecord.load(folder), f"RunRecord.load, {what}")
                continue
            m = plots.load_metrics(folder)
            _survives(lambda m=m: plots.run_title(m), f"learning curve title, {what}")
            if what.startswith(PLOTTED) and what.partition("=")[2] in PLOTTED_ODD:
                _survives(lambda m=m: plots.learning_curve_figure(m), f"learning curve, {what}")


def test_a_loaded_run_record_has_the_types_it_declares(tmp_path: Path) -> None:
    record = RunRecord(run_id="r-1", job="j.yaml", mode="local")
    record.save(tmp_path)
    doc = json.loads((tmp_path / "run.json").read_text())
    for bad in ({"phases": "x"}, {"recoveries": 1}, {"cost_usd": "free"}, {"run_id": 5}, {"mode": None}):
        (tmp_path / "run.json").write_text(json.dumps({**doc, **bad}))
        with pytest.raises(ConfigError, match="not a run record"):
            RunRecord.load(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({**doc, "added_by_a_newer_version": 1}))
    assert RunRecord.load(tmp_path).run_id == "r-1"
