"""The self-play training loop, top to bottom.

    for iteration in start..iterations:
        seed the sampler with (seed, iteration)       -> resume replays exactly
        rollout = game.play(backend, iteration)       -> games, loss terms, reward metrics
        stats = backend.train_step(rollout.samples)   -> one LoRA update (ALGORITHMS.md §1)
        emit game + metrics (+ diagnostics) events    -> RUN_DIR/events.jsonl
        checkpoint every K iterations                 -> RUN_DIR/checkpoints (atomic)

Between phases the loop polls the control channel (`lsp_mlx.control`): pause, resume, stop
and checkpoint. SIGINT/SIGTERM stop the run with a checkpoint; during generation and scoring
(which do not touch the weights) the stop is immediate and the checkpoint is the previous
iteration's state, so a resumed run still equals an uninterrupted one. A second Ctrl-C
aborts at once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from lsp_mlx import checkpoint as ckpt
from lsp_mlx import config as cfg
from lsp_mlx import distributed
from lsp_mlx.control import ControlReader
from lsp_mlx.errors import UserError
from lsp_mlx.events import EVENTS_FILE, EventWriter

# Keys that may differ between a run and its resumption.
RESUMABLE_CHANGES = {("train", "iterations"), ("train", "run_dir"), ("train", "checkpoint_every"), ("train", "keep_checkpoints")}


class StopRun(Exception):
    """Raised by the signal handler to abandon the current phase (nothing was updated yet)."""


def iteration_seed(seed: int, iteration: int) -> int:
    return (seed * 1_000_003 + iteration) % (2**32)


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run, or to resume one that is not there; check it is writable."""
    has_run = (run_dir / EVENTS_FILE).exists() or (run_dir / "config.yaml").exists()
    if has_run and not resume:
        raise UserError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --run-dir")
    if resume and not has_run:
        raise UserError(f"--resume: {run_dir} holds no run to resume: drop --resume to start one there")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"run dir {run_dir} is not writable ({e.strerror}): pass a --run-dir you can write to") from None


def config_differences(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = []
    for section, values in new.items():
        for key, value in values.items():
            old = saved.get(section, {}).get(key)
            if (section, key) not in RESUMABLE_CHANGES and old != value:
                diffs.append(f"{section}.{key}: {old!r} -> {value!r}")
    return diffs


class Trainer:
    def __init__(self, config: cfg.Config, resume: bool = False, rank: int = 0) -> None:
        self.config = config
        self.run_dir = Path(config.train.run_dir)
        self.resume = resume
        self.is_main = rank == 0
        self.dist = distributed.World()  # [distributed] replaced in run() when a launcher started us
        self._stop = False
        self._checkpoint_now = False
        self._paused = False
        self._interruptible = False

    # ----------------------------------------------------------- set-up
    def _resolve_model(self) -> None:
        from lsp_mlx.models import resolve_model

        # the torch backend always runs the fp32 conversion of a GGUF: record that folder
        dequantize = True if self.config.train.backend == "torch" else self.config.model.dequantize
        resolved = resolve_model(self.config.model.path, dequantize)
        self.config.model.path = str(resolved.path)
        self.config.model.base_model = self.config.model.base_model or resolved.base_model

    def _prepare_resume(self) -> tuple[int, Path | None]:
        if not self.resume:
            return 1, None
        saved = cfg.load(self.run_dir / "config.yaml").to_dict()
        diffs = config_differences(saved, self.config.to_dict())
        if diffs:
            raise UserError(f"--resume with a different config ({'; '.join(diffs[:3])}): resume with the run's own config.yaml or start a new --run-dir")
        folder = ckpt.latest_checkpoint(self.run_dir)
        if folder is None:
            return 1, None
        return ckpt.read_state(folder)["iteration"] + 1, folder

    def _truncate_events(self, offset: int | None) -> None:
        """Drop events written after the checkpoint we resume from: those iterations are replayed."""
        path = self.run_dir / EVENTS_FILE
        if offset is None or not path.exists() or path.stat().st_size <= offset:
            return
        with open(path, "rb") as fh:
            kept = fh.read(offset)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(kept)
        os.replace(tmp, path)

    def _install_signals(self) -> None:
        def stop(signum: int, frame: Any) -> None:
            if self._stop:  # second request: give up immediately
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt
            self._stop = True
            print("\nlsp-mlx: stopping: saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)
            if self._interruptible:
                raise StopRun

        def checkpoint_now(signum: int, frame: Any) -> None:
            self._checkpoint_now = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        if hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, checkpoint_now)

    # ----------------------------------------------------------- control
    def _poll_control(self, wait: bool = True) -> None:
        for command in self.control.poll():
            if command == "stop":
                self._stop = True
            elif command == "checkpoint":
                self._checkpoint_now = True
            elif command in ("pause", "resume"):
                paused = command == "pause"
                if paused != self._paused:
                    self._paused = paused
                    self.events.emit("state", state="paused" if paused else "running")
        while wait and self._paused and not self._stop:
            time.sleep(0.2)
            self._poll_control()

    def _control_point(self) -> None:
        """[distributed] Poll the control channel; with several ranks all adopt one decision.

        Rank 0 reads the channel; a stop or checkpoint asked on any rank (a signal) counts;
        while paused, the ranks re-agree every 0.2 s so no collective waits long.
        """
        if self.dist.size == 1:
            self._poll_control()
            return
        while True:
            if self.is_main:
                self._poll_control(wait=False)
            self._stop, self._checkpoint_now, self._paused = distributed.agree_control(
                self.dist, self._stop, self._checkpoint_now, self._paused)
            if not self._paused or self._stop:
                return
            time.sleep(0.2)

    # ----------------------------------------------------------- the loop
    def run(self) -> int:
        from lsp_mlx.backends import get_backend
        from lsp_mlx.blas import preload
        from lsp_mlx.games import make_game

        blas = preload()
        # [distributed] one World per process; rank 0 alone creates a new run folder
        self.dist = distributed.init(self.config.train.backend)
        self.is_main = self.dist.rank == 0
        if self.is_main or self.resume:
            check_run_dir(self.run_dir, self.resume)
        self._resolve_model()
        start, resume_from = self._prepare_resume()
        # Build everything that can fail on bad input before writing anything: a run folder
        # is only created for a run that can start.
        backend = get_backend(self.config)
        if resume_from is not None:
            backend.load_adapter(resume_from)
            backend.load_state(resume_from)
            if self.is_main:  # [distributed]
                self._truncate_events(ckpt.read_state(resume_from).get("events_offset"))
        game = make_game(self.config, backend)
        distributed.prepare(self.dist, backend, game, self.config.game.num_queries, start)  # [distributed]
        if self.is_main and not self.resume:
            tmp = self.run_dir / ".config.yaml.tmp"
            tmp.write_text(cfg.to_yaml(self.config))
            os.replace(tmp, self.run_dir / "config.yaml")
        self.events = EventWriter(self.run_dir, enabled=self.is_main)
        self.control = ControlReader(self.run_dir)
        if self.is_main:  # [distributed] only rank 0 reads the control channel
            self.control.clear()
        self.dist.set_abort_hook(lambda message: self._fail(distributed.DistributedError(message)))
        info = backend.info()
        t = self.config.train
        self.events.emit("run_start", config=self.config.to_dict(), model=self.config.model.path,
                         base_model=self.config.model.base_model, backend=t.backend, device=info.get("device"),
                         blas=info.get("blas", blas), info=info, start_iteration=start, iterations=t.iterations,
                         pid=os.getpid(), resumed=resume_from is not None, world=self.dist.size)
        self._log(f"model {self.config.model.path} | backend {t.backend} on {info.get('device')} "
                  f"({info.get('dtype')}) | BLAS: {info.get('blas', blas)} | "
                  f"{info.get('trainable_params', 0):,} trainable of {info.get('params', 0):,} params")
        if resume_from is not None:
            self._log(f"resuming from {resume_from.name} at iteration {start}")
        if self.dist.size > 1:  # [distributed]
            self._log(f"distributed: {self.dist.describe()}; solver seeding per {self.dist.seeding}")
        diagnostics = _diagnostics()
        self._install_signals()
        done = start - 1  # the last iteration whose update is applied
        status = "finished"
        t_run = time.perf_counter()
        try:
            for it in range(start, t.iterations + 1):
                self._control_point()  # [distributed]
                if self._stop:
                    break
                backend.seed(iteration_seed(t.seed, it))
                backend.reset_peak_memory()
                t0 = time.perf_counter()
                self._interruptible = self.dist.size == 1  # [distributed] ranks stop together
                try:
                    rollout = game.play(backend, it)
                finally:
                    self._interruptible = False
                self._control_point()  # [distributed]
                if self._stop:
                    break
                t1 = time.perf_counter()
                # [distributed] summed gradients, numbers reduced over ranks (identity for one)
                stats = distributed.train_step(self.dist, backend, rollout.samples, t.beta, t.kl_estimator)
                t2 = time.perf_counter()
                rollout = distributed.reduce_rollout(self.dist, rollout)
                done = it
                metrics = {
                    **rollout.metrics,
                    "loss": stats.loss,
                    "kl": stats.kl,
                    "grad_norm": stats.grad_norm,
                    "learning_rate": t.learning_rate,
                    "trained_tokens": float(stats.tokens),
                    "tokens_per_sec": rollout.generated_tokens / max(rollout.timings.get("generate", 0.0), 1e-9),
                    **{f"time/{k}": v for k, v in rollout.timings.items()},
                    "time/update": t2 - t1,
                    "time/iteration": t2 - t0,
                    "memory/peak_gb": backend.peak_memory_gb(),
                }
                for role, values in stats.per_role.items():
                    metrics[f"loss/{role}"] = values["loss"]
                    metrics[f"kl/{role}"] = values["kl"]
                for g in rollout.games:
                    self.events.emit("game", **g.to_dict())
                self.events.emit("metrics", iteration=it, metrics=metrics)
                if diagnostics is not None:
                    values, warnings = diagnostics.update(rollout.games)
                    self.events.emit("diagnostics", iteration=it, diagnostics=values)
                    for w in warnings:
                        self._log(w, level="warning", iteration=it)
                self._progress(it, metrics, time.perf_counter() - t_run, start)
                self._print_games(rollout.games)
                periodic = t.checkpoint_every > 0 and it % t.checkpoint_every == 0
                if periodic or self._checkpoint_now:
                    self._save(backend, it, "control" if self._checkpoint_now and not periodic else "periodic")
                    self._checkpoint_now = False
        except StopRun:
            pass
        except KeyboardInterrupt:
            self._save(backend, done, "signal")
            self.events.emit("run_end", status="stopped")
            raise
        except Exception as e:
            self._fail(e)
            raise
        if self._stop:
            status = "stopped"
        self._save(backend, done, "final" if status == "finished" else "signal")
        self._shutdown()  # [distributed]
        self._log(f"{status} at iteration {done}; adapter in {self.run_dir / ckpt.ADAPTERS}")
        self.events.emit("run_end", status=status, iteration=done)
        self.events.close()
        return 0

    # ----------------------------------------------------------- helpers
    def _shutdown(self) -> None:
        """[distributed] A barrier before exit: no rank leaves while rank 0 still saves."""
        try:
            self.dist.barrier("shutdown")
        except distributed.DistributedError as e:
            self._fail(e)
            raise
        finally:
            self.dist.close()

    def _save(self, backend: Any, iteration: int, reason: str) -> None:
        if not self.is_main or iteration < 1:
            return
        events_offset = (self.run_dir / EVENTS_FILE).stat().st_size if (self.run_dir / EVENTS_FILE).exists() else 0
        state = {"seed": self.config.train.seed, "config_hash": ckpt.config_hash(self.config.to_dict()),
                 "events_offset": events_offset, "saved_at": time.time()}
        folder = ckpt.save_checkpoint(self.run_dir, iteration, backend, state, keep=self.config.train.keep_checkpoints)
        self.events.emit("checkpoint", iteration=iteration, path=str(folder), reason=reason)

    def _fail(self, e: BaseException) -> None:
        tb = traceback.format_exc().strip().splitlines()[-12:]
        message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        if hasattr(self, "events"):
            self.events.emit("log", level="error", message=message)
            self.events.emit("run_end", status="error", error=message, traceback="\n".join(tb))
            self.events.close()

    def _log(self, message: str, level: str = "info", iteration: int | None = None) -> None:
        if self.is_main:
            self.events.emit("log", iteration=iteration, level=level, message=message)
            print(f"[{level}] {message}" if level != "info" else message, file=sys.stderr, flush=True)

    def _print_games(self, games: list[Any]) -> None:
        if not self.is_main:
            return
        for game in [g for g in games if g.valid and g.answers][: self.config.train.print_games]:
            best, worst = game.best(), game.worst()
            print(f"    Q: {_clip(game.query, 110)}", file=sys.stderr)
            print(f"    best  (r={best.reward:.2f}, A={best.advantage:+.2f}): {_clip(best.text, 90)}", file=sys.stderr)
            print(f"    worst (r={worst.reward:.2f}, A={worst.advantage:+.2f}): {_clip(worst.text, 90)}", file=sys.stderr, flush=True)

    def _progress(self, it: int, m: dict[str, float], elapsed: float, start: int) -> None:
        if not self.is_main:
            return
        total = self.config.train.iterations
        done = it - start + 1
        eta = elapsed / done * (total - it)
        width = 20
        filled = int(width * it / total)
        bar = "#" * filled + "-" * (width - filled)
        print(f"[{bar}] {it}/{total} | solver {m.get('reward/solver_mean', 0):.3f} | "
              f"challenger {m.get('reward/challenger_mean', 0):+.3f} | loss {m['loss']:+.4f} | "
              f"kl {m['kl']:.4f} | {m['tokens_per_sec']:.0f} tok/s | {m['time/iteration']:.1f}s | "
              f"eta {eta / 60:.1f} min", file=sys.stderr, flush=True)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _diagnostics() -> Any:
    """The self-play health checks, when that module is part of this build."""
    try:
        from lsp_mlx.diagnostics import Diagnostics
    except ImportError:
        return None
    return Diagnostics()
