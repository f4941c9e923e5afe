"""The dashboard's model of a run (`lsp_mlx.tui.state`), its text helpers and event sources.

No Textual here: these tests fold real event files (the recorded run in
``tests/data/tui_events.jsonl`` and files written by `lsp_mlx.events.EventWriter`) into a
`RunState` and check what the widgets will be told.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lsp_mlx.control import pid_alive
from lsp_mlx.events import EventWriter, read_events
from lsp_mlx.tui.format import clip, duration, number, printable
from lsp_mlx.tui.source import AttachedRun, tail_lines
from lsp_mlx.tui.start import find_presets, find_runs, summarize_run
from lsp_mlx.tui.state import RunState

DATA = Path(__file__).parent / "data"
RECORDED = DATA / "tui_events.jsonl"


def recorded() -> list[dict]:
    return read_events(RECORDED)


def test_recorded_file_is_what_the_generator_writes(tmp_path: Path) -> None:
    # The edge-case tests and the crash snapshot read this file: it must be reproducible.
    sys.path.insert(0, str(DATA))
    try:
        import tui_make_events
    finally:
        sys.path.remove(str(DATA))
    out = tmp_path / "events.jsonl"
    tui_make_events.write(out)
    assert out.read_text() == RECORDED.read_text()


def test_fold_recorded_run() -> None:
    state = RunState()
    assert state.apply_all(recorded())
    assert state.status == "stopped"
    assert (state.iteration, state.total) == (12, 40)
    assert state.games_seen == len(state.games) == 48
    assert state.points("reward/solver_mean")[0] == list(range(1, 13))
    assert state.latest["zero_variance_groups"] == 0.0
    assert max(state.values("zero_variance_groups")) == 0.25
    assert [c.iteration for c in state.checkpoints] == [5, 10, 12]
    assert state.peak_memory_gb() == max(state.values("memory/peak_gb"))
    assert state.elapsed(now=2e9) == state.end_time - state.start_time  # frozen once ended
    assert state.eta() is None  # no ETA for a run that is over
    assert any(line.level == "warning" and "unparsable" in line.message for line in state.logs)
    assert not state.games[4 * 6 + 2].valid  # iteration 7, game 3 was recorded invalid


def test_missing_and_odd_fields_are_tolerated() -> None:
    state = RunState()
    state.apply_all(
        [
            {"type": "run_start", "time": 10.0},  # no model, backend, iterations, pid
            {"type": "metrics", "time": 11.0, "metrics": {"loss": 1.0}},  # no iteration
            {
                "type": "metrics",
                "time": 12.0,
                "metrics": {"loss": float("nan"), "kl": "x", "ok": True},
            },
            {"type": "metrics", "time": 13.0},  # no metrics dict
            {"type": "game", "time": 14.0, "iteration": 1},  # not a game
            {"type": "from_the_future", "x": 1},
            "not even a dict",  # type: ignore[list-item]
            {"type": "log", "message": "no level, no time"},
        ]
    )
    assert state.status == "running"
    assert state.points("loss") == ([1], [1.0])  # NaN is not plotted...
    assert str(state.latest["loss"]) == "nan"  # ...but shown as the latest value
    assert "kl" not in state.latest and "ok" not in state.latest
    assert state.games == []
    assert any("unreadable game event" in line.message for line in state.logs)
    assert state.total is None and state.eta() is None


def test_eta_uses_time_per_iteration_and_stops_when_paused() -> None:
    state = RunState()
    state.apply({"type": "run_start", "time": 0.0, "iterations": 10})
    for it in (1, 2):
        state.apply(
            {
                "type": "metrics",
                "time": 5.0 * it,
                "iteration": it,
                "metrics": {"time/iteration": 4.0},
            }
        )
    assert state.eta() == 8 * 4.0
    assert state.elapsed(now=30.0) == 30.0
    state.apply({"type": "state", "time": 11.0, "state": "paused"})
    assert state.status == "paused" and state.eta() is None
    state.apply({"type": "state", "time": 12.0, "state": "running"})
    assert state.eta() == 32.0


def test_eta_without_timing_metrics_uses_wall_time() -> None:
    state = RunState()
    state.apply({"type": "run_start", "time": 100.0, "iterations": 5})
    state.apply({"type": "metrics", "time": 106.0, "iteration": 1, "metrics": {"loss": 1.0}})
    state.apply({"type": "metrics", "time": 112.0, "iteration": 2, "metrics": {"loss": 1.0}})
    assert state.eta() == 3 * 6.0


def test_resumed_run_replays_iterations_without_duplicates() -> None:
    events = [e for e in recorded() if e["type"] != "run_end" and e.get("iteration", 0) <= 6]
    state = RunState()
    state.apply_all(events)
    generation = state.generation
    # The run resumes from its checkpoint at iteration 5: iteration 6 is played again.
    resume = {**events[0], "resumed": True, "start_iteration": 6, "time": events[-1]["time"] + 60}
    replay = [e for e in events if e.get("iteration") == 6 and e["type"] in ("game", "metrics")]
    state.apply_all([resume, *replay])
    assert state.games_seen == len(state.games) == 6 * 4
    assert state.points("loss")[0] == [1, 2, 3, 4, 5, 6]
    assert state.generation > generation  # the views drop their rows and redraw


def test_new_run_in_the_same_file_starts_over() -> None:
    state = RunState()
    state.apply_all(recorded())
    generation = state.generation
    state.apply({"type": "run_start", "time": 2e9, "iterations": 3, "resumed": False})
    assert state.games == [] and state.series == {} and state.checkpoints == []
    assert state.status == "running" and state.total == 3
    assert state.generation == generation + 1


def test_crash_keeps_data_and_records_traceback() -> None:
    events = [e for e in recorded() if e.get("iteration", 0) <= 3 and e["type"] != "run_end"]
    events.append(
        {
            "type": "run_end",
            "time": events[-1]["time"] + 1,
            "status": "error",
            "error": "RuntimeError: out of memory",
            "traceback": 'Traceback (most recent call last):\n  File "trainer.py", line 9\nRuntimeError: out of memory',
        }
    )
    state = RunState()
    state.apply_all(events)
    assert state.status == "error" and state.error == "RuntimeError: out of memory"
    assert state.traceback[-1] == "RuntimeError: out of memory"
    assert len(state.games) == 12 and state.iteration == 3
    assert [line.level for line in state.logs[-4:]] == ["error"] * 4


def test_mark_lost_and_log_window() -> None:
    state = RunState()
    state.apply({"type": "run_start", "time": 1.0, "iterations": 3})
    state.mark_lost("the trainer is gone", ["Killed"], when=5.0)
    assert state.status == "lost" and state.ended and state.elapsed(now=99.0) == 4.0
    state.mark_lost("again", [])  # a second report changes nothing
    assert state.error == "the trainer is gone"
    seen = state.logs_seen
    state.note("tui", "line one\nline two")
    assert [line.message for line in state.new_logs(seen)] == ["line one", "line two"]


def test_bounded_history(monkeypatch) -> None:
    import lsp_mlx.tui.state as state_module

    monkeypatch.setattr(state_module, "MAX_POINTS", 50)
    monkeypatch.setattr(state_module, "MAX_LOGS", 20)
    state = RunState()
    for it in range(1, 201):
        state.apply({"type": "metrics", "iteration": it, "metrics": {"loss": float(it)}})
        state.apply({"type": "log", "level": "info", "message": f"m{it}"})
    assert len(state.series["loss"]) <= 50 and state.series["loss"][-1] == (200, 200.0)
    assert len(state.logs) <= 20 and state.logs_seen == 200
    assert state.new_logs(195)[-1].message == "m200" and len(state.new_logs(195)) == 5


def test_text_helpers() -> None:
    assert clip("a\n  b\tc", 10) == "a b c"
    assert clip("x" * 20, 5) == "xxxx…"
    assert printable("a\x1b[31mb\x7f\x85") == "a␛[31mb\u2421\ufffd"
    assert duration(3725) == "1:02:05" and duration(None) == "—" and duration(90061) == "1d 1:01:01"
    assert number(0.12345) == "0.123" and number(12345.6) == "12,346" and number(1e-7) == "1.00e-07"


def test_attached_source_tails_a_growing_file_with_a_torn_line(tmp_path: Path) -> None:
    writer = EventWriter(tmp_path)
    source = AttachedRun(tmp_path)
    writer.emit("run_start", iterations=2, pid=1)
    assert [e["type"] for e in source.poll()] == ["run_start"]
    with open(tmp_path / "events.jsonl", "a") as fh:  # half a line: the trainer is mid-write
        fh.write(json.dumps({"v": 1, "type": "log", "message": "hello"})[:15])
    assert source.poll() == []
    with open(tmp_path / "events.jsonl", "a") as fh:
        fh.write(json.dumps({"v": 1, "type": "log", "message": "hello"})[15:] + "\n")
    assert [e.get("message") for e in source.poll()] == ["hello"]
    writer.close()


def test_pid_alive_and_tail_lines(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    assert not pid_alive(int(child.stdout))
    import os

    assert pid_alive(os.getpid())
    log = tmp_path / "train.log"
    log.write_text("one\n\ntwo\nthree\n")
    assert tail_lines(log, 2) == ["two", "three"]
    assert tail_lines(tmp_path / "missing.log", 2) == []


def test_start_screen_discovery(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.yaml").write_text("train:\n  run_dir: elsewhere/a\n")
    finished = tmp_path / "runs" / "old"
    finished.mkdir(parents=True)
    (finished / "events.jsonl").write_text(RECORDED.read_text())
    other = tmp_path / "elsewhere" / "a"
    other.mkdir(parents=True)
    (other / "events.jsonl").write_text(
        json.dumps({"type": "run_start", "iterations": 9, "pid": 999_999_999}) + "\n"
    )
    presets = find_presets([tmp_path / "configs"])
    assert [p.name for p in presets] == ["a.yaml"]
    runs = find_runs(presets, cwd=tmp_path)
    by_name = {r.path.name: r for r in runs}
    assert by_name["old"].status == "stopped" and by_name["old"].iteration == 12
    assert by_name["a"].status == "interrupted" and by_name["a"].total == 9
    assert summarize_run(tmp_path / "nothing").status == "unreadable"


def test_spark_is_one_column_per_iteration_right_aligned() -> None:
    from lsp_mlx.tui.widgets import spark

    bars, span = spark([(1, 0.0), (2, 1.0), (4, 0.5)], last=4, width=6, bounds=None)
    assert bars == "  ▁█ ▅" and span == (0.0, 1.0)  # iteration 3 is missing: a blank, not a zero
    bars, span = spark([(1, 1.26), (2, 1.35)], last=2, width=2, bounds=(0.0, 2.0))
    assert bars == "▅▆" and span == (0.0, 2.0)  # on its own scale a small change stays small
    assert spark([(1, 1.0), (2, 1.35)], last=2, width=2, bounds=None, from_zero=True) == (
        "▆█",
        (0.0, 1.35),
    )  # a reward from 0: a 35% rise is a step of a quarter, not the whole height
    assert spark([], last=3, width=4, bounds=None) == ("    ", None)
    assert spark([(1, 5.0)], last=1, width=3, bounds=None)[0] == "  ▄"  # one point: one bar


def test_axis_numbers() -> None:
    from lsp_mlx.tui.format import iteration_ticks, nice_range, significant

    assert significant(0.554852) == "0.5549" and significant(-2.03e-3) == "-0.00203"
    assert significant(123456.0) == "1.23e+05" and significant(0.0) == "0"
    assert iteration_ticks(1, 6, 4) == [1, 2, 4, 6] and iteration_ticks(1, 3, 8) == [1, 2, 3]
    assert all(isinstance(t, int) for t in iteration_ticks(1, 37, 5))
    lo, hi, ticks = nice_range(0.554852, 0.555001)
    assert lo <= 0.554852 and hi >= 0.555001 and all(len(significant(t)) <= 6 for t in ticks)
    assert nice_range(0.0, 1.0, 4)[2] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_damaged_bytes_in_events_cost_only_their_line(tmp_path: Path) -> None:
    good = [{"type": "log", "level": "info", "message": m} for m in ("before", "after")]
    (tmp_path / "events.jsonl").write_bytes(
        (json.dumps(good[0]) + "\n").encode()
        + b'{"type": "log", "message": "\xc3\x28 not UTF-8"}\n{"type": "lo\n'
        + (json.dumps(good[1]) + "\n").encode()
    )
    state = RunState()
    state.apply_all(AttachedRun(tmp_path).poll())
    assert [line.message for line in state.logs] == ["before", "after"]
