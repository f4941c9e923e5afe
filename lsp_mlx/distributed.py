"""Data-parallel self-play over the engines' own collectives (docs/algorithms.md §1).

``mlx.launch -n K --backend ring -- python -m lsp_mlx train ...`` (MLX: ``mx.distributed``)
and ``torchrun --nproc_per_node=K -m lsp_mlx train --backend torch ...`` (``torch.distributed``,
NCCL on GPU, gloo on CPU) start K copies of the trainer. `init` finds out which launcher
started this process and returns a `World`; without a launcher it is the single-process
`World` whose collectives are the identity, so one code path serves every run. The `World`
reaches the rest as an argument: the game gets it when it is built (`make_game`), the trainer
calls its reductions (`World.step_reducer`, `reduce_step`, `reduce_rollout`,
`agree_control`), and the backend's ``train_step`` gets the gradient sum as ``grad_reduce``.

How an iteration splits (the rules the LSP game and the trainer follow):

- **Shared decisions are seeded identically on every rank**: the trainer seeds each iteration
  with the same seed everywhere, so every rank draws the *same* N Challenger queries (one
  prompt, N samples: cheap) and then keeps its contiguous share `shard(N)`. A query's whole
  group of G answers stays on the rank that owns the query, so the Solver advantages
  ``R - V(q)`` never leave it.
- **Solver seeding** (`Seeding`, ``LSP_MLX_SOLVER_SEEDING``): ``batch`` (the default) samples
  all of a rank's answers in one batch, from the iteration's stream in a single process and
  from ``rank_seed(seed, iteration, rank)`` on each of several ranks: fast (the decoding of
  several queries is batched), statistically the same training, but not bit-equal across rank
  counts. ``query`` draws the G answers of query i with ``query_seed(seed, iteration, i)``, one
  query at a time, so the answers do not depend on how many ranks there are: a 2-rank run then
  equals a 1-rank run (both with ``query``) and a run may resume with another rank count; it
  costs the batching across queries (measured: about 3-4x the generation time on CPU). A
  sampled judge (``reward.judge_temperature`` > 0) draws from the stream after the Solver, so
  it is rank-count independent in neither mode (the default judge is greedy).
- **Everything batch-level is global**: the Challenger baseline ``Vbar`` is the mean of *all*
  ranks' Challenger rewards, the loss weights ``1/(N*G)`` and ``alpha_Ch/N`` use the global
  number of live queries, and the metrics are computed on all ranks' games (gathered).
- **Gradients are summed, not averaged**: every sample's weight already carries the global
  normalisation, so each rank's loss is a partial sum of the one global loss and its gradient
  is the sum of the ranks' gradients (``mx.distributed.all_sum`` / ``all_reduce(SUM)`` on one
  flat buffer). ``nn.average_gradients`` would divide that by K.
- **Only rank 0 writes** events, config.yaml and checkpoints; every rank loads the same
  checkpoint on resume (the run dir must be shared or copied), and `check_start` checks that all
  ranks start from byte-identical adapter and optimizer state.

Failure: a rank that dies makes the others' next collective fail at once (both engines notice
a closed socket); that surfaces as `DistributedError` (exit code 3). A rank that hangs while
alive would block MLX's ring backend forever, so a watchdog thread aborts any collective that
waits longer than ``LSP_MLX_DIST_TIMEOUT`` seconds (default 1800) with a clear message; torch
gets the same timeout natively. The watchdog also covers start-up (a rank that never starts).
A rank started by ``lsp-mlx launch`` on this machine also ends when that process is gone
(`watch_launcher`): ``mlx.launch`` and ``torchrun`` would outlive a launcher killed by SIGKILL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lsp_mlx.errors import UserError

if TYPE_CHECKING:
    from lsp_mlx.backends.base import StepStats
    from lsp_mlx.games.base import Rollout
    from lsp_mlx.records import PolicySample

TIMEOUT_ENV = "LSP_MLX_DIST_TIMEOUT"
LAUNCHER_ENV = "LSP_MLX_LAUNCHER"  # "host:pid" of `lsp-mlx launch`, inherited by local ranks
SEEDING_ENV = "LSP_MLX_SOLVER_SEEDING"
DEFAULT_TIMEOUT = 1800.0
Seeding = Literal["query", "batch"]


class DistributedError(UserError):
    """A rank was lost or a collective timed out: one line, exit code 3."""

    exit_code = 3


# ------------------------------------------------------------------ pure rules
def shard(n: int, rank: int, size: int) -> range:
    """The contiguous share of ``n`` items that ``rank`` of ``size`` owns (sizes differ by <= 1).

    Contiguous, so concatenating the ranks' lists in rank order gives the global order: sums
    over gathered values are then added in the same order as in a 1-rank run.
    """
    return range(rank * n // size, (rank + 1) * n // size)


def query_seed(seed: int, iteration: int, index: int) -> int:
    """The sampling seed of query ``index``'s G answers (seeding ``query``)."""
    return _mix("query", seed, iteration, index)


def rank_seed(seed: int, iteration: int, rank: int) -> int:
    """The sampling seed of all of one rank's answers (seeding ``batch`` with several ranks)."""
    return _mix("rank", seed, iteration, rank)


def _mix(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


def timeout_from_env() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise UserError(
            f"{TIMEOUT_ENV}={raw!r} is not a positive number of seconds: set e.g. {TIMEOUT_ENV}=600"
        )
    return value


def seeding_from_env() -> Seeding:
    raw = os.environ.get(SEEDING_ENV)
    if raw is None:
        return "batch"
    if raw not in ("query", "batch"):
        raise UserError(
            f"{SEEDING_ENV}={raw!r}: use query (rank-count independent) or batch (faster)"
        )
    return raw  # type: ignore[return-value]


# ------------------------------------------------------------------ watchdog
class _Watchdog:
    """Aborts the process when one collective waits longer than ``timeout`` seconds.

    The main thread is then blocked inside the engine's C++ code and cannot raise, so the
    thread prints the reason, calls ``on_abort`` (rank 0 records the error event) and exits.
    """

    def __init__(self, timeout: float, rank: int) -> None:
        self.timeout = timeout
        self.rank = rank
        self.on_abort: Callable[[str], None] | None = None
        self._what: str | None = None
        self._since = 0.0
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="lsp-mlx-dist-watchdog", daemon=True).start()

    @contextlib.contextmanager
    def watch(self, what: str) -> Iterator[None]:
        with self._lock:
            self._what, self._since = what, time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._what = None

    def _run(self) -> None:
        period = min(1.0, self.timeout / 4)
        while True:
            time.sleep(period)
            with self._lock:
                what, since = self._what, self._since
            if what is not None and time.monotonic() - since > self.timeout:
                self._abort(what)

    def _abort(self, what: str) -> None:
        message = (
            f"distributed: rank {self.rank} waited more than {self.timeout:g}s for the other ranks "
            f"during {what}: a rank hung or never started; stop them all, then resume with --resume "
            f"(raise {TIMEOUT_ENV} if a phase is legitimately that uneven)"
        )
        print(f"lsp-mlx: error: {message}", file=sys.stderr, flush=True)
        if self.on_abort is not None:
            with contextlib.suppress(Exception):
                self.on_abort(message)
        os._exit(DistributedError.exit_code)


# ------------------------------------------------------------------ worlds
class World:
    """One process (the base class); `MLXWorld` and `TorchWorld` override the primitives."""

    rank = 0
    size = 1
    engine = "local"

    def __init__(self, seeding: Seeding | None = None, watchdog: _Watchdog | None = None) -> None:
        self.seeding: Seeding = seeding or seeding_from_env()
        self._watchdog = watchdog

    # --- primitives (exact: Python objects travel as JSON, floats round-trip bit-exactly)
    def all_gather_object(self, obj: Any, what: str = "a gather") -> list[Any]:
        """``obj`` of every rank, in rank order."""
        return [obj]

    def barrier(self, what: str = "a barrier") -> None:
        self.all_gather_object(None, what)

    def gradient_reducer(self) -> Callable[[Any], Any] | None:
        """What the backend calls on its accumulated gradients before clipping: the SUM over ranks."""
        return None

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "1 process"

    def step_reducer(self, n_samples: int) -> Callable[[Any], Any] | None:
        """The ``grad_reduce`` of this step's ``train_step``: None for one process, and None when
        no rank has a sample (then nobody steps, as in one process); else the gradient sum, so
        a rank without samples still steps with the others."""
        if self.size == 1 or self.all_sum([n_samples], "the sample count")[0] == 0:
            return None
        return self.gradient_reducer()

    def reduce_rollout(self, rollout: Rollout) -> Rollout:
        """Generated tokens summed, phase timings as the slowest rank's (the phase's wall time)."""
        if self.size == 1:
            return rollout
        parts = self.all_gather_object(
            {"tokens": rollout.generated_tokens, "timings": rollout.timings},
            "the rollout statistics",
        )
        timings = {k: max(p["timings"].get(k, 0.0) for p in parts) for k in rollout.timings}
        return dataclasses.replace(
            rollout, generated_tokens=sum(p["tokens"] for p in parts), timings=timings
        )

    def agree_control(self, stop: bool, checkpoint: bool, paused: bool) -> tuple[bool, bool, bool]:
        """Every rank adopts one decision: stop/checkpoint if any rank asks, pause as rank 0 says."""
        if self.size == 1:
            return stop, checkpoint, paused
        parts = self.all_gather_object([stop, checkpoint, paused], "the control check")
        return any(p[0] for p in parts), any(p[1] for p in parts), bool(parts[0][2])

    def reduce_step(self, samples: list[PolicySample], stats: StepStats) -> StepStats:
        """The step's numbers over every rank (identity for one process): loss and tokens
        summed, KL averaged over all samples, per-role numbers merged."""
        if self.size == 1:
            return stats
        from lsp_mlx.backends.base import RoleTotals, StepStats

        roles = sorted({s.role for s in samples})
        local = {
            "loss": stats.loss,
            "kl": stats.kl * len(samples),
            "n": len(samples),
            "tokens": stats.tokens,
            "grad_norm": stats.grad_norm,
            "roles": {
                r: {
                    "loss": stats.per_role[r]["loss"],
                    "n": sum(s.role == r for s in samples),
                    "kl": stats.per_role[r]["kl"] * sum(s.role == r for s in samples),
                }
                for r in roles
            },
        }
        parts = self.all_gather_object(local, "the step statistics")
        n = sum(p["n"] for p in parts)
        totals = RoleTotals()
        for p in parts:
            totals.merge(p["roles"])
        return StepStats(
            loss=sum(p["loss"] for p in parts),
            kl=sum(p["kl"] for p in parts) / max(n, 1),
            grad_norm=parts[0]["grad_norm"],
            tokens=sum(p["tokens"] for p in parts),
            per_role=totals.per_role(),
        )

    def set_abort_hook(self, hook: Callable[[str], None]) -> None:
        if self._watchdog is not None:
            self._watchdog.on_abort = hook

    # --- built on the primitives
    def shard(self, n: int) -> range:
        return shard(n, self.rank, self.size)

    def all_concat(self, items: Sequence[Any], what: str = "a gather") -> list[Any]:
        """The ranks' lists concatenated in rank order (the global order for `shard` lists)."""
        return [x for part in self.all_gather_object(list(items), what) for x in part]

    def all_sum(self, values: Sequence[float], what: str = "a sum") -> list[float]:
        """Elementwise sums over ranks, added in rank order in float64 (identical on every rank)."""
        parts = self.all_gather_object([float(v) for v in values], what)
        return [sum(column) for column in zip(*parts)] if parts else []

    def check_same(self, what: str, value: Any) -> None:
        """Raise unless every rank holds the same ``value`` (JSON-comparable)."""
        values = self.all_gather_object(value, f"the {what} check")
        for rank, other in enumerate(values):
            if other != values[0]:
                raise DistributedError(
                    f"rank {rank} has a different {what} than rank 0 ({other!r} vs {values[0]!r}): "
                    "run every rank with the same config, model files and lsp-mlx version, and on --resume "
                    "give every rank the same run dir (a shared folder, or a copy of RUN_DIR)"
                )

    @contextlib.contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        """Time-bound a collective and turn an engine failure into one clear error."""
        watch = self._watchdog.watch(what) if self._watchdog else contextlib.nullcontext()
        try:
            with watch:
                yield
        except DistributedError:
            raise
        except Exception as e:  # the engines raise RuntimeError (or subclasses) on a lost peer
            detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise DistributedError(
                f"distributed: rank {self.rank} lost the other ranks during {what} ({detail}): "
                "a rank crashed or was killed, see its error above; resume with --resume"
            ) from None


class MLXWorld(World):
    """Ranks started by ``mlx.launch`` (ring over TCP, JACCL over Thunderbolt RDMA, MPI)."""

    engine = "mlx"

    def __init__(self, timeout: float, seeding: Seeding | None = None) -> None:
        import mlx.core as mx

        self._mx = mx
        self.rank = int(os.environ.get("MLX_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
        self._watchdog = _Watchdog(timeout, self.rank)
        with self._collective("start-up (connecting to the other ranks)"):
            self.group = mx.distributed.init(strict=True)
        self.rank, self.size = self.group.rank(), self.group.size()
        self._watchdog.rank = self.rank
        super().__init__(seeding, self._watchdog)

    def all_gather_object(self, obj: Any, what: str = "a gather") -> list[Any]:
        import numpy as np

        mx = self._mx
        payload = json.dumps(obj).encode()
        with self._collective(what):
            sizes = mx.distributed.all_gather(
                mx.array([len(payload)], dtype=mx.int32), group=self.group
            )
            sizes_list = [int(n) for n in sizes.tolist()]
            width = max(sizes_list)
            buf = mx.array(np.frombuffer(payload.ljust(width, b" "), dtype=np.uint8))
            raw = bytes(np.array(mx.distributed.all_gather(buf, group=self.group)))
        return [json.loads(raw[r * width : r * width + n]) for r, n in enumerate(sizes_list)]

    def gradient_reducer(self) -> Callable[[Any], Any]:
        def all_sum(grads: Any) -> Any:
            from mlx.utils import tree_flatten, tree_map, tree_unflatten

            mx = self._mx
            flat = tree_flatten(grads)
            with self._collective("the gradient sum"):
                if len({g.dtype for _, g in flat}) != 1:  # mixed dtypes cannot share one buffer
                    out = tree_map(lambda g: mx.distributed.all_sum(g, group=self.group), grads)
                    mx.eval(out)
                    return out
                # one flat buffer: one round trip (what nn.average_gradients does, minus its / K)
                big = mx.distributed.all_sum(
                    mx.concatenate([g.reshape(-1) for _, g in flat]), group=self.group
                )
                offsets = [0]
                for _, g in flat:
                    offsets.append(offsets[-1] + g.size)
                parts = mx.split(big, offsets[1:-1]) if len(flat) > 1 else [big]
                out = tree_unflatten([(k, p.reshape(g.shape)) for (k, g), p in zip(flat, parts)])
                mx.eval(out)
                return out

        return all_sum

    def describe(self) -> str:
        return f"{self.size} ranks over mx.distributed ({os.environ.get('MLX_LAUNCH_BACKEND', 'mlx.launch')})"


class TorchWorld(World):
    """Ranks started by ``torchrun``: NCCL on CUDA, gloo on CPU."""

    engine = "torch"

    def __init__(self, timeout: float, seeding: Seeding | None = None) -> None:
        import torch
        import torch.distributed as dist

        self._torch, self._dist = torch, dist
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        on_gpu = torch.cuda.is_available() and os.environ.get("LSP_MLX_DEVICE", "cuda").startswith(
            "cuda"
        )
        if on_gpu:
            torch.cuda.set_device(local_rank)  # the backend's "cuda" device is then this rank's GPU
        self.rank = int(os.environ.get("RANK", "0"))
        self._watchdog = _Watchdog(timeout * 1.5 + 30, self.rank)  # torch's own timeout fires first
        with self._collective("start-up (connecting to the other ranks)"):
            dist.init_process_group(
                "nccl" if on_gpu else "gloo", timeout=timedelta(seconds=timeout)
            )
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.backend_name = dist.get_backend()
        self._watchdog.rank = self.rank
        super().__init__(seeding, self._watchdog)

    def all_gather_object(self, obj: Any, what: str = "a gather") -> list[Any]:
        out: list[Any] = [None] * self.size
        with self._collective(what):
            self._dist.all_gather_object(out, json.dumps(obj))
        return [json.loads(s) for s in out]

    def barrier(self, what: str = "a barrier") -> None:
        with self._collective(what):
            self._dist.barrier()

    def gradient_reducer(self) -> Callable[[Any], Any]:
        def all_sum(params: list[Any]) -> list[Any]:
            torch = self._torch
            for p in params:  # a rank without samples contributes zeros
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            with self._collective("the gradient sum"):
                self._dist.all_reduce(flat, op=self._dist.ReduceOp.SUM)
            offset = 0
            for p in params:
                p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
                offset += p.numel()
            return params

        return all_sum

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._dist.destroy_process_group()

    def describe(self) -> str:
        return f"{self.size} ranks over torch.distributed ({self.backend_name})"


def launched_by() -> str | None:
    """``mlx`` under mlx.launch/mpirun, ``torch`` under torchrun, None for a plain process."""
    env = os.environ
    if "MLX_RANK" in env or "MLX_WORLD_SIZE" in env or "OMPI_COMM_WORLD_SIZE" in env:
        hostfile = env.get("MLX_HOSTFILE")
        # `mlx.launch -n 1` hands its one rank an empty ring hostfile: that is one process
        alone = hostfile is not None and (
            not os.path.isfile(hostfile) or not Path(hostfile).read_text().strip()
        )
        if (
            alone
            and "MLX_IBV_DEVICES" not in env
            and "MLX_WORLD_SIZE" not in env
            and "OMPI_COMM_WORLD_SIZE" not in env
        ):
            return None
        return "mlx"
    if "TORCHELASTIC_RUN_ID" in os.environ or ("WORLD_SIZE" in os.environ and "RANK" in os.environ):
        return "torch"
    return None


def launcher_id() -> str:
    """This process as the ranks' launcher: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def watch_launcher(value: str | None, period: float = 0.5) -> None:
    """End this rank when the `lsp-mlx launch` process that started it is gone.

    ``mlx.launch`` and ``torchrun`` outlive a launcher killed by SIGKILL, and so would their
    ranks, training on for nobody; a rank on another machine (ssh) does not inherit the
    variable, and one on this machine checks the host name before it trusts the pid.
    """
    host, _, pid = (value or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return

    def watch() -> None:
        while True:
            time.sleep(period)
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                print(
                    f"lsp-mlx: error: lsp-mlx launch (pid {pid}) is gone: this rank stops too",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(DistributedError.exit_code)
            except PermissionError:
                pass  # alive, someone else's: cannot happen for our own parent, but harmless

    threading.Thread(target=watch, name="lsp-mlx-launcher-watch", daemon=True).start()


def init(backend: str) -> World:
    """The world of this process: started by a launcher or not, for train.backend ``backend``."""
    launcher = launched_by()
    watch_launcher(os.environ.get(LAUNCHER_ENV))
    if launcher is None:
        return World()
    if launcher != backend:
        fix = (
            "torchrun --nproc_per_node=K -m lsp_mlx train --backend torch ..."
            if backend == "torch"
            else "mlx.launch -n K --backend ring -- python -m lsp_mlx train ..."
        )
        raise UserError(
            f"started by {'mlx.launch' if launcher == 'mlx' else 'torchrun'} but train.backend is {backend}: "
            f"launch the {backend} backend with {fix} (lsp-mlx train --distributed prints it)"
        )
    timeout = timeout_from_env()
    return MLXWorld(timeout) if launcher == "mlx" else TorchWorld(timeout)


# ------------------------------------------------------------------ trainer helpers
def check_start(world: World, backend: Any, start: int) -> None:
    """Before the first iteration: every rank starts at the same iteration with the same weights."""
    if world.size == 1:
        return
    world.check_same("starting iteration", start)
    world.check_same("adapter and optimizer state", state_fingerprint(backend))


def state_fingerprint(backend: Any) -> str:
    """A hash of the trainable weights and optimizer state, exact across machines."""
    import numpy as np

    h = hashlib.sha256()
    if getattr(backend, "name", "") == "torch":
        tensors = [p for p in backend.model.parameters() if p.requires_grad]
        for state in backend.optimizer.state.values():
            tensors += [v for _, v in sorted(state.items()) if hasattr(v, "detach")]
        for t in tensors:
            h.update(t.detach().float().cpu().numpy().tobytes())
    else:
        import mlx.core as mx
        from mlx.utils import tree_flatten

        for _, v in tree_flatten(backend.model.trainable_parameters()) + tree_flatten(
            backend.optimizer.state
        ):
            h.update(
                np.array(v.astype(mx.float32) if v.dtype == mx.bfloat16 else v).tobytes()
            )  # numpy has no bf16
    return h.hexdigest()[:16]
