"""``lsp-mlx launch``: start data-parallel self-play with the engine's own launcher.

    lsp-mlx launch -n 2 -- --config configs/tiny.yaml --run-dir runs/dp   # mlx.launch, ring, this machine
    lsp-mlx launch --hostfile hosts.json -- --config ...                # several Macs (mlx.launch over ssh)
    lsp-mlx launch -n 2 -- --backend torch --config ...                 # torchrun --standalone (DDP-style)
    lsp-mlx launch -n 2 --print -- ...                                  # print the command, run nothing

Everything after ``--`` is passed to ``lsp-mlx train`` unchanged; the engine follows the
config's ``train.backend``. This module only builds the launcher's command line (`mlx_command`,
`torch_command`); the communication is the engines' own (`lsp_mlx.distributed`).
``lsp-mlx train --distributed K`` prints the same commands with `launch_help`.

Before any rank starts, the run is checked once here (config, run dir, model path, whether
the game runs data-parallel with this many ranks). The ranks on this machine end when this
process ends, even by SIGKILL: each watches it (`lsp_mlx.distributed.watch_launcher`).
``mlx.launch`` exits 0 even when a rank fails, so after it returns this wrapper reads rank 0's
``run_end`` event and turns a failed run into a non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from lsp_mlx.commands.train_flags import add_train_arguments, config_from_args
from lsp_mlx.distributed import LAUNCHER_ENV, launcher_id
from lsp_mlx.errors import UserError
from lsp_mlx.games import check_data_parallel
from lsp_mlx.readers import read_json
from lsp_mlx.trainer import check_run_dir, resolve_run_model

DEFAULT_PORT = 32323  # mlx.launch's own default starting port for the ring backend


def mlx_command(
    train_args: list[str],
    processes: int = 2,
    port: int = DEFAULT_PORT,
    hostfile: str | None = None,
    backend: str | None = None,
    python: str = "python",
) -> list[str]:
    """``mlx.launch`` running ``python -m lsp_mlx train TRAIN_ARGS`` on every rank.

    The ``--`` keeps train's own flags (``--backend``, ``-n`` ...) away from mlx.launch's parser.
    A hostfile names the machines (and may name the backend, e.g. jaccl for Thunderbolt RDMA);
    without one, ``processes`` ranks run on this machine over the ring backend.
    """
    cmd = ["mlx.launch"]
    cmd += ["--hostfile", hostfile] if hostfile else ["-n", str(processes)]
    if backend or not hostfile:
        cmd += ["--backend", backend or "ring"]
    threads = blas_threads(processes) if not hostfile else None
    if threads is not None:
        cmd += ["--env", f"OPENBLAS_NUM_THREADS={threads}"]
    cmd += ["--starting-port", str(port), "--", python, "-m", "lsp_mlx", "train", *train_args]
    return cmd


def blas_threads(processes: int) -> int | None:
    """OpenBLAS threads per rank when ``processes`` ranks share this Linux CPU (None: leave as is).

    Each rank would otherwise start one BLAS thread per core, and K ranks would fight over
    the cores (measured: 74 s instead of 54 s for the tiny 2-rank test run on 2 cores).
    """
    if sys.platform != "linux" or processes < 2 or "OPENBLAS_NUM_THREADS" in os.environ:
        return None
    return max(1, (os.cpu_count() or 1) // processes)


def torch_command(
    train_args: list[str], processes: int = 2, nodes: int = 1, endpoint: str | None = None
) -> list[str]:
    """``torchrun`` running ``-m lsp_mlx train TRAIN_ARGS`` on ``processes`` ranks per node.

    One node: ``--standalone`` (a free port on localhost). Several: a c10d rendezvous at
    ``endpoint`` (host:port of the first node); run the same command on every node.
    """
    cmd = ["torchrun"]
    if nodes == 1:
        cmd.append("--standalone")
    else:
        cmd += [
            f"--nnodes={nodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint or 'HOST0:29500'}",
        ]
    cmd += [f"--nproc-per-node={processes}", "-m", "lsp_mlx", "train", *train_args]
    if "--backend" not in train_args:
        cmd += ["--backend", "torch"]
    return cmd


def launch_help(train_args: list[str], processes: int) -> str:
    """What ``lsp-mlx train --distributed K`` prints: the exact commands for this run."""
    q = shlex.join
    return "\n".join(
        [
            f"# MLX, {processes} processes on this machine (ring backend over localhost):",
            q(mlx_command(train_args, processes, python=sys.executable)),
            "",
            "# MLX, several Macs: one line per Mac in hosts.json (same venv path and working folder on each),",
            '#   [{"ssh": "mac1.local", "ips": ["192.168.1.10"]}, {"ssh": "mac2.local", "ips": ["192.168.1.11"]}]',
            "# (mlx.distributed_config --over thunderbolt --hosts mac1,mac2 --output-hostfile hosts.json writes a JACCL one)",
            q(mlx_command(train_args, processes, hostfile="hosts.json", python=sys.executable)),
            "",
            f"# PyTorch, {processes} processes on one node (NCCL on GPUs, gloo on CPU):",
            q(torch_command(train_args, processes)),
            "",
            "# PyTorch, 2 nodes: run this on each node (HOST0 = the first node's address):",
            q(torch_command(train_args, processes, nodes=2)),
            "",
            "# or let lsp-mlx run the first one: "
            + q(["lsp-mlx", "launch", "-n", str(processes), "--", *train_args]),
        ]
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "launch",
        help="run `lsp-mlx train` data-parallel with mlx.launch or torchrun",
        description="Start K ranks of `lsp-mlx train` with the engine's own launcher (mlx.launch for the MLX "
        "backend, torchrun for --backend torch). Arguments after -- go to `lsp-mlx train`.",
        epilog="Example: lsp-mlx launch -n 2 -- --config configs/tiny.yaml --run-dir runs/dp. "
        "Scaling notes: docs/scaling.md",
    )
    p.add_argument(
        "-n", "--processes", type=int, default=2, help="ranks on this machine (per node for torch)"
    )
    p.add_argument("--hostfile", help="mlx.launch hostfile (JSON) naming several machines")
    p.add_argument(
        "--mlx-backend",
        choices=("ring", "jaccl", "jaccl-ring", "mpi"),
        help="mlx.launch backend (default: ring, or the hostfile's)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="first TCP port of the ring backend (one per rank)",
    )
    p.add_argument(
        "--print", dest="print_only", action="store_true", help="print the command and exit"
    )
    p.add_argument(
        "train_args", nargs=argparse.REMAINDER, help="-- then the arguments of `lsp-mlx train`"
    )
    p.set_defaults(run=run)


def _beside_python(tool: str) -> str:
    """The launcher installed with this Python (works without an activated venv), else PATH's."""
    path = Path(sys.executable).parent / tool
    return str(path) if path.is_file() else tool


def _run_ends(run_dir: Path) -> list[str] | None:
    """The statuses of the run_end events in ``run_dir`` (None when its events are not here)."""
    from lsp_mlx.events import EVENTS_FILE, read_events

    if not (run_dir / EVENTS_FILE).is_file():
        return None
    return [e.get("status", "") for e in read_events(run_dir) if e.get("type") == "run_end"]


def run(args: argparse.Namespace) -> int:
    train_args = list(args.train_args)
    if train_args[:1] == ["--"]:
        train_args = train_args[1:]
    if args.processes < 1:
        raise UserError(f"-n must be >= 1, got {args.processes}")
    train_parser = argparse.ArgumentParser(prog="lsp-mlx launch -- ", add_help=False)
    add_train_arguments(train_parser)
    parsed, unknown = train_parser.parse_known_args(train_args)
    if unknown:
        raise UserError(
            f"lsp-mlx train does not take {' '.join(unknown)}: see lsp-mlx train --help"
        )
    if args.hostfile is not None:
        # mlx.launch would answer a bad hostfile with its usage block, once per attempt
        hosts = read_json(
            args.hostfile, "the --hostfile", fix="pass mlx.launch's JSON list of hosts"
        )
        if not isinstance(hosts, list) or not hosts:
            raise UserError(
                f"--hostfile {args.hostfile} holds no list of hosts: write the JSON list "
                "mlx.distributed_config writes"
            )
    if not 0 < args.port <= 65536 - args.processes:
        raise UserError(
            f"--port {args.port} leaves no room for {args.processes} ranks' ports: "
            f"pass a port in 1..{65536 - args.processes}"
        )
    if parsed.config is None:
        raise UserError(
            "lsp-mlx launch needs the run's config: pass it after --, e.g. "
            "lsp-mlx launch -n 2 -- --config configs/tiny.yaml --run-dir runs/dp"
        )
    # what every rank would find out on its own, found once before any rank starts
    config = config_from_args(parsed)
    if not args.hostfile:
        check_data_parallel(config.game.name, args.processes, config.game.num_queries)
    engine = config.train.backend
    if engine == "torch":
        if args.hostfile:
            raise UserError(
                "--hostfile is for mlx.launch: for several torch nodes run torchrun on each (lsp-mlx train --distributed prints it)"
            )
        cmd = torch_command(train_args, args.processes)
    else:
        cmd = mlx_command(
            train_args, args.processes, args.port, args.hostfile, args.mlx_backend, sys.executable
        )
    if args.print_only:
        print(shlex.join(cmd))
        return 0
    check_run_dir(config.train.run_dir, parsed.resume)
    resolve_run_model(config)  # a GGUF is converted once here, not by every rank at once
    print(f"lsp-mlx: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    run_dir = Path(config.train.run_dir)
    ends_before = _run_ends(run_dir) or []
    # local ranks inherit this and end when this process ends (`lsp_mlx.distributed`)
    env = {**os.environ, LAUNCHER_ENV: launcher_id()}
    try:
        proc = subprocess.Popen([_beside_python(cmd[0]), *cmd[1:]], env=env)
    except FileNotFoundError:
        raise UserError(
            f"{cmd[0]} not found: install {'torch' if engine == 'torch' else 'mlx'} in this environment"
        ) from None
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:
            # the ranks got the Ctrl-C too and stop together after a checkpoint: wait for them
            continue
    ends = _run_ends(run_dir)
    if code == 0 and engine == "mlx" and (ends is not None or not args.hostfile):
        # mlx.launch exits 0 even when a rank failed: rank 0's new run_end event tells
        new = (ends or [])[len(ends_before) :]
        if not new or new[-1] not in ("finished", "stopped"):
            status = new[-1] if new else "none"
            print(
                f"lsp-mlx: error: the run did not finish (status: {status}): see the ranks' errors above",
                file=sys.stderr,
            )
            return 1
    return code
