"""Data-parallel self-play on torch.distributed (issue 7): torchrun with gloo on this CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli, tiny_train_args
from test_distributed import free_ports

from lsp_mlx import distributed
from lsp_mlx.events import read_events

pytestmark = pytest.mark.torch


def adapter(run_dir: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(run_dir / "adapters" / "adapters.safetensors"))


def test_torchrun_two_ranks_equal_one_rank(tiny_model, tmp_path):
    """torchrun --standalone --nproc-per-node=2 (through lsp-mlx launch) and one process."""
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    import numpy as np

    one, two = tmp_path / "one", tmp_path / "two"
    # per-query Solver seeds on both (see test_two_ranks_equal_one_rank); torchrun gives each
    # rank one thread, and so does the reference, so both sum in the same order
    env = {distributed.SEEDING_ENV: "query", "OMP_NUM_THREADS": "1"}
    ref = run_cli("train", *tiny_train_args(tiny_model, one), "--backend", "torch", env=env)
    assert ref.returncode == 0, ref.stderr[-3000:]
    dp = run_cli(
        "launch", "-n", "2", "--", *tiny_train_args(tiny_model, two), "--backend", "torch", env=env
    )
    assert dp.returncode == 0, dp.stderr[-3000:]
    assert "torchrun --standalone --nproc-per-node=2" in dp.stderr
    assert "distributed: 2 ranks over torch.distributed (gloo)" in dp.stderr

    a, b = adapter(one), adapter(two)
    assert a.keys() == b.keys()
    assert max(np.abs(v).max() for k, v in b.items() if "lora_b" in k) > 1e-3  # it did learn
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-4, err_msg=k)
    ev1, ev2 = read_events(one), read_events(two)
    assert [e["type"] for e in ev2].count("run_start") == 1 and ev2[-1]["status"] == "finished"
    m1, m2 = ([e["metrics"] for e in ev if e["type"] == "metrics"] for ev in (ev1, ev2))
    assert m2[0]["challenger/invalid"] == 0.0
    for x, y in zip(m1, m2):
        for key in (
            "loss",
            "grad_norm",
            "kl",
            "reward/solver_mean",
            "reward/challenger_mean",
            "trained_tokens",
        ):
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-6), key


WORKER = textwrap.dedent("""
    import os, signal, sys
    import torch
    from lsp_mlx import distributed
    world = distributed.init("torch")
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.full((3,), float(world.rank + 1))
    q = torch.nn.Parameter(torch.zeros(2))  # no gradient on this rank: it adds zeros
    world.gradient_reducer()([p, q])
    print(p.grad.tolist(), q.grad.tolist(), world.all_sum([0.5]), flush=True)
    if world.rank == 1:
        if sys.argv[1] == "hang":
            os.kill(os.getpid(), signal.SIGSTOP)
        os._exit(9)
    world.barrier("the last barrier")
""")


@pytest.mark.parametrize("how", ["die", "hang"])
def test_lost_or_hung_torch_rank_is_a_clear_error(tmp_path, how):
    pytest.importorskip("torch")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = free_ports(1)
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": "2",
        distributed.TIMEOUT_ENV: "5",
        "PYTHONUNBUFFERED": "1",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), how],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for r in range(2)
    ]
    try:
        t0 = time.monotonic()
        out, err = procs[0].communicate(timeout=90)
        assert time.monotonic() - t0 < 60
    finally:
        procs[1].kill()
        procs[1].wait()
    assert json.loads(out.split("]", 1)[0] + "]") == [3.0, 3.0, 3.0]  # the SUM of 1 and 2
    assert "[0.0, 0.0] [1.0]" in out
    assert (
        procs[0].returncode == 1
        and "DistributedError: distributed: rank 0 lost the other ranks during the last barrier"
        in err
    )
