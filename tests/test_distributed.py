"""Data-parallel self-play on mx.distributed (issue 7): the rules, the collectives, and whole
runs as real processes on localhost (ring backend over TCP, each test on its own ports)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli, tiny_train_args

from lsp_mlx import control, distributed
from lsp_mlx.errors import UserError
from lsp_mlx.events import read_events


def free_ports(n: int) -> int:
    """A base port with ``n`` consecutive free TCP ports (the ring backend uses base + rank)."""
    for _ in range(200):
        base = random.randint(20000, 60000 - n)
        try:
            socks = []
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


def ring_env(tmp_path: Path, rank: int, size: int, base: int, **extra: str) -> dict[str, str]:
    """What mlx.launch sets for a local ring rank, so a test can start (and kill) ranks itself."""
    hostfile = tmp_path / f"hosts-{base}.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{base + r}"] for r in range(size)]))
    return {
        **os.environ,
        "MLX_RANK": str(rank),
        "MLX_HOSTFILE": str(hostfile),
        "PYTHONUNBUFFERED": "1",
        "OPENBLAS_NUM_THREADS": "1",  # as lsp-mlx launch sets it for ranks sharing this CPU
        **extra,
    }


# ------------------------------------------------------------------ the rules
def test_shard_is_contiguous_and_covers_every_query_once():
    for n in range(1, 12):
        for size in range(1, 5):
            shares = [distributed.shard(n, r, size) for r in range(size)]
            assert [i for s in shares for i in s] == list(range(n))  # rank order = query order
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_seeds_depend_on_query_not_on_rank_count():
    a = distributed.query_seed(0, 3, 5)
    assert a == distributed.query_seed(0, 3, 5) and 0 <= a < 2**32
    assert len({distributed.query_seed(0, it, i) for it in range(5) for i in range(8)}) == 40
    assert distributed.rank_seed(0, 3, 1) != distributed.rank_seed(0, 3, 0)


def test_single_process_world_is_the_identity(monkeypatch):
    for key in (
        "MLX_RANK",
        "MLX_WORLD_SIZE",
        "OMPI_COMM_WORLD_SIZE",
        "TORCHELASTIC_RUN_ID",
        "WORLD_SIZE",
        "RANK",
        distributed.SEEDING_ENV,
    ):
        monkeypatch.delenv(key, raising=False)
    world = distributed.init("mlx")
    assert type(world) is distributed.World and (world.rank, world.size) == (0, 1)
    assert world.seeding == "batch" and world.shard(5) == range(5)
    assert world.all_sum([1.5, 2.0]) == [1.5, 2.0] and world.all_concat([1, 2]) == [1, 2]
    assert world.agree_control(False, True, True) == (False, True, True)
    assert world.gradient_reducer() is None and world.step_reducer(3) is None


def test_mlx_launch_with_one_rank_is_a_plain_process(monkeypatch, tmp_path):
    """`mlx.launch -n 1` gives its rank an empty ring hostfile (one newline): no peers to join."""
    for key in ("MLX_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "MLX_IBV_DEVICES", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(key, raising=False)
    hostfile = tmp_path / "hosts"
    hostfile.write_text("\n")
    monkeypatch.setenv("MLX_RANK", "0")
    monkeypatch.setenv("MLX_HOSTFILE", str(hostfile))
    assert distributed.launched_by() is None and type(distributed.init("mlx")) is distributed.World
    hostfile.write_text('[["127.0.0.1:5000"], ["127.0.0.1:5001"]]')
    assert distributed.launched_by() == "mlx"


def test_env_knobs_are_checked(monkeypatch):
    monkeypatch.setenv(distributed.SEEDING_ENV, "per-rank")
    with pytest.raises(UserError, match="use query"):
        distributed.World()
    monkeypatch.setenv(distributed.SEEDING_ENV, "query")
    assert distributed.World().seeding == "query"
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(UserError, match="positive number of seconds"):
        distributed.timeout_from_env()


def test_launcher_and_backend_must_match(monkeypatch):
    monkeypatch.setenv("MLX_RANK", "0")
    with pytest.raises(UserError, match="torchrun --nproc_per_node"):
        distributed.init("torch")
    monkeypatch.delenv("MLX_RANK")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(UserError, match="mlx.launch -n K"):
        distributed.init("mlx")


# ------------------------------------------------------------------ collectives, 2 real ranks
WORKER = textwrap.dedent("""
    import json, os, signal, sys
    from lsp_mlx.blas import preload
    preload()
    import mlx.core as mx
    from lsp_mlx import control, distributed
    world = distributed.init("mlx")
    r = world.rank
    out = {"size": world.size, "seeding": world.seeding, "shard": list(world.shard(5))}
    out["concat"] = world.all_concat([{"rank": r, "x": 0.1 * (r + 1)}] * (r + 1))
    out["sum"] = world.all_sum([0.1, r + 0.2])
    grads = {"a": mx.full((2, 3), float(r + 1)), "b": {"c": mx.array([1.0, -1.0]) * (r + 1)}}
    summed = world.gradient_reducer()(grads)
    out["grads"] = [summed["a"].tolist(), summed["b"]["c"].tolist()]
    try:
        world.check_same("value", r)
    except distributed.DistributedError as e:
        out["check"] = str(e)
    if sys.argv[1] == "hang" and r == 1:
        os.kill(os.getpid(), signal.SIGSTOP)  # alive but silent: the ring backend would wait forever
    if sys.argv[1] == "die" and r == 1:
        os._exit(9)
    print(json.dumps(out), flush=True)
    world.barrier("the last barrier")
    print("done", flush=True)
""")


def start_ranks(
    tmp_path: Path, script: str, args: list[str], size: int = 2, **env: str
) -> list[subprocess.Popen]:
    path = tmp_path / "worker.py"
    path.write_text(script)
    base = free_ports(size)
    return [
        subprocess.Popen(
            [sys.executable, str(path), *args],
            env=ring_env(tmp_path, r, size, base, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for r in range(size)
    ]


def test_collectives_over_two_ring_ranks(tmp_path):
    procs = start_ranks(tmp_path, WORKER, ["ok"])
    outs = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    results = [json.loads(o.splitlines()[0]) for o, _ in outs]
    for r, res in enumerate(results):
        assert res["size"] == 2 and res["seeding"] == "batch"  # the default; query is opt-in
        assert res["shard"] == [[0, 1], [2, 3, 4]][r]
        assert res["concat"] == [
            {"rank": 0, "x": 0.1},
            {"rank": 1, "x": 0.2},
            {"rank": 1, "x": 0.2},
        ]
        assert res["sum"] == [0.1 + 0.1, 0.2 + 1.2]  # float64, added in rank order: exact
        assert res["grads"] == [
            [[3.0] * 3] * 2,
            [3.0, -3.0],
        ]  # the SUM of the ranks' gradients, not the mean
        assert "rank 1 has a different value than rank 0" in res["check"]


def test_lost_rank_is_a_clear_error(tmp_path):
    procs = start_ranks(tmp_path, WORKER, ["die"])
    out0, err0 = procs[0].communicate(timeout=60)
    procs[1].wait(timeout=10)
    assert (
        procs[0].returncode == 1 and "DistributedError" in err0
    )  # uncaught here: the CLI prints it
    assert "lost the other ranks during the last barrier" in err0


def test_watchdog_ends_a_hung_collective(tmp_path):
    procs = start_ranks(tmp_path, WORKER, ["hang"], **{distributed.TIMEOUT_ENV: "4"})
    try:
        t0 = time.monotonic()
        _, err0 = procs[0].communicate(timeout=60)
        assert procs[0].returncode == distributed.DistributedError.exit_code
        assert time.monotonic() - t0 < 45
        assert "rank 0 waited more than 4s for the other ranks during the last barrier" in err0
    finally:
        procs[1].kill()
        procs[1].wait()


# ------------------------------------------------------------------ whole runs


def adapter(run_dir: Path) -> dict:
    import mlx.core as mx

    return mx.load(str(run_dir / "adapters" / "adapters.safetensors"))


def test_two_ranks_equal_one_rank(tiny_model, tmp_path):
    """mlx.launch -n 2 (through lsp-mlx launch) and one process, same N queries and seeds.

    Both seed the Solver per query (LSP_MLX_SOLVER_SEEDING=query), the rule that makes the
    answers independent of the rank count; the default (batch) is only statistically equal.
    """
    one, two = tmp_path / "one", tmp_path / "two"
    env = {distributed.SEEDING_ENV: "query"}
    ref = run_cli("train", *tiny_train_args(tiny_model, one), env=env)
    assert ref.returncode == 0, ref.stderr[-3000:]
    port = str(free_ports(2))
    dp = run_cli(
        "launch", "-n", "2", "--port", port, "--", *tiny_train_args(tiny_model, two), env=env
    )
    assert dp.returncode == 0, dp.stderr[-3000:]
    assert "mlx.launch -n 2 --backend ring" in dp.stderr
    assert (
        "distributed: 2 ranks over mx.distributed (mlx.launch); solver seeding per query"
        in dp.stderr
    )

    import mlx.core as mx

    a, b = adapter(one), adapter(two)
    assert a.keys() == b.keys()
    assert max(mx.abs(v).max().item() for k, v in b.items() if "lora_b" in k) > 1e-3  # it did learn
    for k in a:  # lr is 1e-3: a missing or doubled gradient would move weights by ~1e-3
        assert mx.allclose(a[k], b[k], atol=1e-4).item(), k

    ev1, ev2 = read_events(one), read_events(two)
    assert [e["type"] for e in ev2].count("run_start") == 1 and ev2[0][
        "world"
    ] == 2  # rank 0 alone writes

    def games(ev: list[dict]) -> list[tuple]:
        return [
            (e["iteration"], e["index"], e["query"], [x["text"] for x in e["answers"]])
            for e in ev
            if e["type"] == "game"
        ]

    assert games(ev1) == games(ev2) and len(games(ev2)) == 4
    m1, m2 = ([e["metrics"] for e in ev if e["type"] == "metrics"] for ev in (ev1, ev2))
    assert m2[0]["challenger/invalid"] == 0.0  # both ranks had a query, so both added gradients
    for x, y in zip(m1, m2):
        for key in (
            "loss",
            "grad_norm",
            "kl",
            "reward/solver_mean",
            "reward/challenger_mean",
            "advantage/challenger_abs_mean",
            "trained_tokens",
            "answer_tokens_mean",
        ):
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-6), (
                key
            )  # grad_norm: summed, not averaged
    assert ev2[-1]["type"] == "run_end" and ev2[-1]["status"] == "finished"


def start_train_ranks(tmp_path: Path, args: list[str], **env: str) -> list[subprocess.Popen]:
    """Two `lsp-mlx train` ranks started by hand (as mlx.launch would), so one can be killed."""
    base = free_ports(2)
    cmd = [sys.executable, "-m", "lsp_mlx", "train", *args]
    return [
        subprocess.Popen(
            cmd,
            env=ring_env(tmp_path, r, 2, base, **env),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]


def wait_for(
    run_dir: Path, what, procs: list[subprocess.Popen], timeout: float = 120
) -> list[dict]:
    """Poll rank 0's events until ``what(events)`` holds; fail early if a rank died."""
    deadline = time.monotonic() + timeout
    while not what(events := read_events(run_dir)):
        for p in procs:
            assert p.poll() is None, p.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"timed out; last events: {events[-3:]}"
        time.sleep(0.3)
    return events


def metrics_of(events: list[dict]) -> list[int]:
    return [e["iteration"] for e in events if e["type"] == "metrics"]


def test_killed_rank_makes_the_other_exit_and_the_run_resumes(tiny_model, tmp_path):
    """Pause both ranks, kill one: the other fails fast; then resume on 2 ranks and stop them."""
    run_dir = tmp_path / "run"
    # The ring backend usually reports the dead peer at once ("lost the other ranks"); a kill
    # that lands mid-transfer can instead leave the collective waiting, and then the watchdog
    # ends it. Both are the promised fast failure, so both are accepted, the watchdog's at 30 s.
    timeout = 30
    procs = start_train_ranks(
        tmp_path,
        tiny_train_args(tiny_model, run_dir, 40),
        **{distributed.TIMEOUT_ENV: str(timeout)},
    )
    try:
        wait_for(run_dir, metrics_of, procs)
        control.send(run_dir, "pause")  # rank 0 reads it; rank 1 follows at the next agreement
        paused = metrics_of(
            wait_for(run_dir, lambda ev: any(e.get("state") == "paused" for e in ev), procs)
        )
        time.sleep(2)
        assert metrics_of(read_events(run_dir)) == paused  # nobody trains while paused
        procs[1].send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        _, err = procs[0].communicate(timeout=90)
        assert time.monotonic() - t0 < timeout + 15
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert procs[0].returncode == distributed.DistributedError.exit_code, err[-3000:]
    reasons = (
        "lost the other ranks during the control check",
        f"waited more than {timeout}s for the other ranks during the control check",
    )
    assert any(f"lsp-mlx: error: distributed: rank 0 {r}" in err for r in reasons), err[-3000:]
    end = read_events(run_dir)[-1]
    assert end["type"] == "run_end" and end["status"] == "error"
    assert any(r in end["error"] for r in reasons), end["error"]

    # both ranks load the same checkpoint (checked by hash in distributed.check_start) and go on;
    # a stop sent to rank 0's run dir ends both at the same iteration, after a checkpoint
    saved = max(e["iteration"] for e in read_events(run_dir) if e["type"] == "checkpoint")
    procs = start_train_ranks(tmp_path, [*tiny_train_args(tiny_model, run_dir, 40), "--resume"])
    try:
        wait_for(run_dir, lambda ev: saved + 1 in metrics_of(ev), procs)
        control.send(run_dir, "stop")
        errs = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert [p.returncode for p in procs] == [0, 0], errs[0][-3000:]
    assert f"resuming from iter-{saved:06d} at iteration {saved + 1}" in errs[0]
    events = read_events(run_dir)
    done = metrics_of(events)
    assert done == list(range(1, done[-1] + 1)) and done[-1] < 40
    assert events[-1]["status"] == "stopped" and events[-1]["iteration"] == done[-1]
    assert (run_dir / "checkpoints" / f"iter-{done[-1]:06d}").is_dir()


# ------------------------------------------------------------------ commands
def test_train_distributed_prints_the_launch_commands(capsys):
    from lsp_mlx.cli import main

    assert (
        main(
            ["train", "--config", "configs/tiny.yaml", "--run-dir", "runs/x", "--distributed", "3"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "mlx.launch -n 3 --backend ring " in out and " --starting-port 32323 -- " in out
    assert " -m lsp_mlx train --config configs/tiny.yaml --run-dir runs/x" in out
    assert "mlx.launch --hostfile hosts.json" in out and '"ips"' in out
    assert (
        "torchrun --standalone --nproc-per-node=3 -m lsp_mlx train --config configs/tiny.yaml "
        "--run-dir runs/x --backend torch"
    ) in out
    assert "--nnodes=2 --rdzv-backend=c10d" in out


def test_launch_checks_the_train_arguments_first(capsys):
    from lsp_mlx.cli import main

    assert (
        main(
            [
                "launch",
                "-n",
                "2",
                "--print",
                "--",
                "--config",
                "configs/tiny.yaml",
                "--backend",
                "torch",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith(
        "torchrun --standalone --nproc-per-node=2 -m lsp_mlx train"
    )
    assert (
        main(
            [
                "launch",
                "--print",
                "--",
                "--config",
                "configs/tiny.yaml",
                "--set",
                "game.num_queries=0",
            ]
        )
        == 2
    )
    assert "num_queries" in capsys.readouterr().err
    assert main(["launch", "--print", "--", "--bogus"]) == 2
    assert "does not take --bogus" in capsys.readouterr().err


def test_games_refuse_what_cannot_run_data_parallel():
    from lsp_mlx.games import check_data_parallel

    with pytest.raises(UserError, match="game sqlm does not run data-parallel"):
        check_data_parallel("sqlm", ranks=2, num_queries=8)
    with pytest.raises(UserError, match="set game.num_queries to at least 2"):
        check_data_parallel("lsp", ranks=2, num_queries=1)
    check_data_parallel("lsp-zero", ranks=2, num_queries=2)
    check_data_parallel("spin", ranks=1, num_queries=1)  # one process: every game


def test_launch_fails_when_the_ranks_fail(tiny_model, tmp_path):
    """mlx.launch exits 0 whatever its ranks do; lsp-mlx launch reads rank 0's events instead.

    The fault is one only a rank finds (LoRA on more blocks than the model has, found when the
    model is built); launch itself checks the config, run dir and model path before spawning.
    """
    proc = run_cli(
        "launch",
        "-n",
        "2",
        "--port",
        str(free_ports(2)),
        "--",
        "--config",
        "configs/tiny.yaml",
        "--model",
        str(tiny_model),
        "--run-dir",
        str(tmp_path / "run"),
        "--set",
        "lora.num_layers=99",
        timeout=240,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "lora.num_layers" in proc.stderr
    assert "lsp-mlx: error: the run did not finish (status: none)" in proc.stderr
