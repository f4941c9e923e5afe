"""The self-play training loop, top to bottom.

    build model, backend, game (nothing written yet)  -> bad input costs nothing
    for iteration in start..iterations:
        seed the sampler with (seed, iteration)       -> resume replays exactly
        rollout = game.play(backend, iteration)       -> games, loss terms, reward metrics
        stats = backend.train_step(rollout.samples)   -> one LoRA update (docs/algorithms.md §1)
        emit game + metrics (+ diagnostics) events    -> RUN_DIR/events.jsonl
        checkpoint every K iterations                 -> RUN_DIR/checkpoints (atomic, with the
                                                         game's state)

Between phases the loop polls the control channel (`lsp_mlx.control`): pause, resume, stop
and checkpoint. SIGINT/SIGTERM stop the run with a checkpoint; during generation and scoring
(which do not touch the weights) the stop is immediate and the checkpoint is the previous
iteration's state, so a resumed run still equals an uninterrupted one. A second Ctrl-C
aborts at once.

Faults: a non-finite loss or gradient norm stops the run (exit 2) before anything else is
saved, so the newest checkpoint holds finite weights; a full disk is one error line (exit 2)
and events.jsonl keeps whole lines only. Data-parallel runs (`lsp_mlx.distributed`) differ in
three calls on the `World`: the gradient sum handed to ``train_step`` and the reductions of
the step's and the rollout's numbers (and one more for the control decisions); each is the
identity for one process.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shlex
import shutil
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
from lsp_mlx.diagnostics import Diagnostics
from lsp_mlx.errors import UserError
from lsp_mlx.events import EVENTS_FILE, EventWriter, cut_events, read_events
from lsp_mlx.records import Game

# Keys that may differ between a run and its resumption (none changes what is trained).
RESUMABLE_CHANGES = {
    ("train", "backend"),  # the checkpoint files are the same on both (docs/torch.md)
    ("train", "iterations"),
    ("train", "run_dir"),
    ("train", "checkpoint_every"),
    ("train", "keep_checkpoints"),
    ("train", "print_games"),
    ("train", "report_to"),
    ("train", "tracker_project"),
    ("train", "run_name"),
}


class StopRun(Exception):
    """Raised by the signal handler to abandon the current phase (nothing was updated yet)."""


class Diverged(UserError):
    """The loss or the gradient is no longer finite."""


def iteration_seed(seed: int, iteration: int) -> int:
    return (seed * 1_000_003 + iteration) % (2**32)


def check_run_dir(run_dir_setting: str, resume: bool) -> Path:
    """Refuse an empty run dir, overwriting a run or resuming one that is not there; check the
    folder can be written. Nothing is created."""
    if not str(run_dir_setting).strip():
        raise UserError("the run dir is empty: pass --run-dir FOLDER (e.g. --run-dir runs/my-run)")
    run_dir = Path(run_dir_setting).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run dir {run_dir} is a file: pass a folder as --run-dir")
    has_run = (run_dir / EVENTS_FILE).exists() or (run_dir / "config.yaml").exists()
    if has_run and not resume:
        raise UserError(
            f"{run_dir} already holds a run: pass --resume to continue it, or choose another --run-dir"
        )
    if resume and not has_run:
        raise UserError(
            f"--resume: {run_dir} holds no run to resume: drop --resume to start one there"
        )
    if resume and not (run_dir / "config.yaml").is_file():
        raise UserError(
            f"--resume: {run_dir} has no config.yaml (the run was stopped before it started): "
            "delete the folder and start the run again"
        )
    folder = next((p for p in (run_dir, *run_dir.parents) if p.exists()), Path("."))
    try:
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(
            f"run dir {run_dir} is not writable ({e.strerror}): pass a --run-dir you can write to"
        ) from None
    return run_dir


def resolve_run_model(config: cfg.Config) -> None:
    """Point ``model.path`` at the model folder the run loads (a GGUF is converted once, cached)."""
    from lsp_mlx.models import resolve_model

    # the torch backend always runs the fp32 conversion of a GGUF: record that folder
    dequantize = True if config.train.backend == "torch" else config.model.dequantize
    resolved = resolve_model(config.model.path, dequantize)
    config.model.path = str(resolved.path)
    config.model.base_model = config.model.base_model or resolved.base_model


def config_differences(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = []
    for section, values in new.items():
        for key, value in values.items():
            old = saved.get(section, {}).get(key)
            if (section, key) not in RESUMABLE_CHANGES and old != value:
                diffs.append(f"{section}.{key}: {old!r} -> {value!r}")
    return diffs


def is_disk_full(e: BaseException, run_dir: Path) -> bool:
    """ENOSPC, or a write error of a framework (MLX raises a plain RuntimeError) while the
    run dir's disk has less than 1 MiB left."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return True
    folder = next((p for p in (run_dir, *run_dir.parents) if p.exists()), Path("."))
    try:
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


def disk_full(run_dir: Path) -> UserError:
    return UserError(
        f"the disk holding {run_dir} is full (no space left on device): free some space, then "
        "continue with --resume (the last checkpoint is intact)"
    )


class Trainer:
    def __init__(
        self, config: cfg.Config, resume: bool = False, reset_optimizer: bool = False
    ) -> None:
        self.config = config
        self.run_dir = Path(config.train.run_dir)
        self.resume = resume
        self.reset_optimizer = reset_optimizer
        self.world: distributed.World = distributed.World()
        self.is_main = True
        self.events: EventWriter | None = None
        self._resume_state: dict[str, Any] = {}
        self._done = 0  # the last iteration whose update is applied
        self._stop = False
        self._checkpoint_now = False
        self._paused = False
        self._interruptible = False

    # ----------------------------------------------------------- set-up (writes nothing)
    def _prepare_resume(self) -> tuple[int, Path | None]:
        """The first iteration to play and the checkpoint to load (None: start clean)."""
        if not self.resume:
            return 1, None
        saved = cfg.load(self.run_dir / "config.yaml").to_dict()
        new = self.config.to_dict()
        diffs = config_differences(saved, new)
        if diffs:
            raise UserError(
                f"--resume with a different config ({'; '.join(diffs[:3])}): resume with the run's "
                "own config.yaml or start a new --run-dir"
            )
        found = ckpt.resumable(self.run_dir, lambda m: self._warn(m))
        if found is None:
            return 1, None
        folder, self._resume_state = found
        before, now = saved["train"]["backend"], new["train"]["backend"]
        if before != now:
            # both backends write the adapter in mlx-lm's format and the optimizer in MLX's layout
            self._warn(
                f"resuming a run trained on backend {before} with backend {now}: the adapter and "
                "optimizer state carry over, the sampling does not, so the run differs from one "
                "that stayed on one backend"
            )
        if not (folder / ckpt.OPTIMIZER_STATE).exists() and not self.reset_optimizer:
            raise UserError(
                f"checkpoint {folder} has no {ckpt.OPTIMIZER_STATE}: restore it, or pass "
                "--reset-optimizer to continue with a fresh optimizer (the run then differs from "
                "an uninterrupted one)"
            )
        return self._resume_state["iteration"] + 1, folder

    def _load_checkpoint(self, backend: Any, game: Any, folder: Path) -> None:
        backend.load_adapter(folder)
        if not self.reset_optimizer:
            backend.load_state(folder)
        game_state = ckpt.read_game_state(folder)
        if game_state is not None:
            game.load_state_dict(game_state)
        elif game.state_dict():
            self._warn(
                f"checkpoint {folder.name} lacks {ckpt.GAME_STATE_FILE} (written by an earlier "
                f"version): game {game.name} starts its state afresh, so the resumed run may "
                "differ from an uninterrupted one"
            )

    def _warn(self, message: str) -> None:
        if self.is_main:
            print(f"lsp-mlx: warning: {message}", file=sys.stderr, flush=True)

    def _cut_events(self, folder: Path | None) -> None:
        """Drop what was written after the checkpoint we resume from (those iterations are
        replayed) and a torn last line; keep that checkpoint's own event. No checkpoint: the
        run starts clean."""
        path = self.run_dir / EVENTS_FILE
        if not path.exists():
            return
        if folder is None:
            cut_events(path, 0)
            return
        state = self._resume_state
        offset = state.get("events_offset")
        if offset is not None:
            with open(path, "rb") as fh:
                fh.seek(offset)
                line = fh.readline()
            event = _parse(line)
            if (
                line.endswith(b"\n")
                and event.get("type") == "checkpoint"
                and event.get("iteration") == state["iteration"]
            ):
                offset += len(line)
        cut_events(path, offset)

    def _install_signals(self) -> None:
        def stop(signum: int, frame: Any) -> None:
            if self._stop:  # second request: give up immediately
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt
            self._stop = True
            print(
                "\nlsp-mlx: stopping: saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr
            )
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
                    self._emit("state", state="paused" if paused else "running")
        while wait and self._paused and not self._stop:
            time.sleep(0.2)
            self._poll_control()

    def _control_point(self) -> None:
        """Poll the control channel; with several ranks all adopt one decision.

        Rank 0 reads the channel; a stop or checkpoint asked on any rank (a signal) counts;
        while paused, the ranks re-agree every 0.2 s so no collective waits long.
        """
        if self.world.size == 1:
            self._poll_control()
            return
        while True:
            if self.is_main:
                self._poll_control(wait=False)
            self._stop, self._checkpoint_now, self._paused = self.world.agree_control(
                self._stop, self._checkpoint_now, self._paused
            )
            if not self._paused or self._stop:
                return
            time.sleep(0.2)

    # ----------------------------------------------------------- the run
    def run(self) -> int:
        try:
            return self._run()
        except (OSError, RuntimeError) as e:
            if not is_disk_full(e, self.run_dir):
                raise
            error = disk_full(self.run_dir)
            self._fail(error)
            raise error from None

    def _run(self) -> int:
        from lsp_mlx.backends import get_backend
        from lsp_mlx.blas import preload
        from lsp_mlx.games import make_game

        blas = preload()
        # Build everything that can fail on bad input before writing anything: a run folder
        # is only created for a run that can start.
        self.world = distributed.init(self.config.train.backend)
        self.is_main = self.world.rank == 0
        t = self.config.train
        if self.is_main or self.resume:
            self.run_dir = check_run_dir(t.run_dir, self.resume)
        if t.report_to:
            from lsp_mlx.tracking import check_installed

            check_installed(t.report_to)
        resolve_run_model(self.config)
        start, resume_from = self._prepare_resume()
        backend = get_backend(self.config)
        game = make_game(self.config, backend, self.world)
        if resume_from is not None:
            self._load_checkpoint(backend, game, resume_from)
        distributed.check_start(self.world, backend, start)

        # The run starts: from here on, files are written.
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.resume:
                self._cut_events(resume_from)
            else:
                tmp = self.run_dir / ".config.yaml.tmp"
                tmp.write_text(cfg.to_yaml(self.config))
                os.replace(tmp, self.run_dir / "config.yaml")
        self.events = EventWriter(self.run_dir, enabled=self.is_main, listeners=self._trackers())
        self.control = ControlReader(self.run_dir)
        if self.is_main:  # only rank 0 reads the control channel
            self.control.clear()
        self.world.set_abort_hook(lambda message: self._fail(distributed.DistributedError(message)))
        info = backend.info()
        self._emit(
            "run_start", config=self.config.to_dict(), model=self.config.model.path,
            base_model=self.config.model.base_model, backend=t.backend, device=info.get("device"),
            blas=info.get("blas", blas), info=info, start_iteration=start, iterations=t.iterations,
            pid=os.getpid(), resumed=resume_from is not None, world=self.world.size,
        )  # fmt: skip
        self._log(
            f"model {self.config.model.path} | backend {t.backend} on {info.get('device')} "
            f"({info.get('dtype')}) | BLAS: {info.get('blas', blas)} | "
            f"{info.get('trainable_params', 0):,} trainable of {info.get('params', 0):,} params"
        )
        if resume_from is not None:
            self._log(f"resuming from {resume_from.name} at iteration {start}")
        if self.world.size > 1:
            self._log(
                f"distributed: {self.world.describe()}; solver seeding per {self.world.seeding}"
            )
        diagnostics = Diagnostics()
        if resume_from is not None and self.is_main:
            self._replay(diagnostics)
        self._install_signals()
        try:
            status, done = self._loop(backend, game, diagnostics, start)
            self._save(backend, game, done, "final" if status == "finished" else "signal")
        except KeyboardInterrupt:
            self._save(backend, game, self._done, "signal")
            self._emit("run_end", status="stopped")
            raise
        except BaseException as e:
            self._fail(e)
            raise
        self._shutdown()
        self._log(f"{status} at iteration {done}; adapter in {self.run_dir / ckpt.ADAPTERS}")
        self._emit("run_end", status=status, iteration=done)
        assert self.events is not None
        self.events.close()
        self._print_next_commands()
        return 0

    def _replay(self, diagnostics: Diagnostics) -> None:
        """Feed the diagnostics the games of the iterations before the resume: their windows
        and streaks continue as in an uninterrupted run."""
        by_iteration: dict[int, list[Game]] = {}
        for event in read_events(self.run_dir):
            if event.get("type") == "game":
                game = Game.from_dict(event)
                by_iteration.setdefault(game.iteration, []).append(game)
        for iteration in sorted(by_iteration):
            diagnostics.update(by_iteration[iteration])

    def _loop(
        self, backend: Any, game: Any, diagnostics: Diagnostics, start: int
    ) -> tuple[str, int]:
        """The iterations; returns the status and the last iteration whose update is applied."""
        t = self.config.train
        world = self.world
        self._done = start - 1
        t_run = time.perf_counter()
        try:
            for it in range(start, t.iterations + 1):
                self._control_point()
                if self._stop:
                    break
                backend.seed(iteration_seed(t.seed, it))
                backend.reset_peak_memory()
                t0 = time.perf_counter()
                self._interruptible = world.size == 1  # several ranks stop together
                try:
                    rollout = game.play(backend, it)
                finally:
                    self._interruptible = False
                self._control_point()
                if self._stop:
                    break
                t1 = time.perf_counter()
                grad_reduce = world.step_reducer(len(rollout.samples))
                stats = backend.train_step(
                    rollout.samples, t.beta, t.kl_estimator, grad_reduce=grad_reduce
                )
                stats = world.reduce_step(rollout.samples, stats)
                t2 = time.perf_counter()
                self._check_finite(it, stats)
                rollout = world.reduce_rollout(rollout)
                self._done = it
                metrics = {
                    **rollout.metrics,
                    "loss": stats.loss,
                    "kl": stats.kl,
                    "grad_norm": stats.grad_norm,
                    "learning_rate": t.learning_rate,
                    "trained_tokens": float(stats.tokens),
                    "tokens_per_sec": rollout.generated_tokens
                    / max(rollout.timings.get("generate", 0.0), 1e-9),
                    **{f"time/{k}": v for k, v in rollout.timings.items()},
                    "time/update": t2 - t1,
                    "time/iteration": t2 - t0,
                    "memory/peak_gb": backend.peak_memory_gb(),
                }
                for role, values in stats.per_role.items():
                    metrics[f"loss/{role}"] = values["loss"]
                    metrics[f"kl/{role}"] = values["kl"]
                for g in rollout.games:
                    self._emit("game", **g.to_dict())
                self._emit("metrics", iteration=it, metrics=metrics)
                values, warnings = diagnostics.update(rollout.games)
                self._emit("diagnostics", iteration=it, diagnostics=values)
                for w in warnings:
                    self._log(w, level="warning", iteration=it)
                self._progress(it, metrics, time.perf_counter() - t_run, start)
                self._print_games(rollout.games)
                periodic = t.checkpoint_every > 0 and it % t.checkpoint_every == 0
                if periodic or self._checkpoint_now:
                    reason = "control" if self._checkpoint_now and not periodic else "periodic"
                    self._save(backend, game, it, reason)
                    self._checkpoint_now = False
        except StopRun:
            pass
        return ("stopped" if self._stop else "finished"), self._done

    def _check_finite(self, iteration: int, stats: Any) -> None:
        """Stop before a non-finite update reaches a checkpoint: the newest one stays finite."""
        bad = [
            name
            for name, value in (("loss", stats.loss), ("gradient norm", stats.grad_norm))
            if not math.isfinite(value)
        ]
        if bad:
            t = self.config.train
            raise Diverged(
                f"training diverged at iteration {iteration}: the {' and the '.join(bad)} "
                f"became {stats.loss if bad[0] == 'loss' else stats.grad_norm}, most likely from "
                f"too high a train.learning_rate ({t.learning_rate:g}) or train.beta ({t.beta:g}): "
                "lower them and start a new --run-dir (the last checkpoint holds finite weights)"
            )

    def _trackers(self) -> list[Any]:
        if not self.is_main or not self.config.train.report_to:
            return []
        from lsp_mlx.tracking import open_trackers

        try:
            return open_trackers(self.config, self.run_dir)
        except UserError:
            raise
        except Exception as e:  # a tracker that cannot start must not cost the run
            self._warn(
                f"the trackers could not start ({type(e).__name__}: {e}): the run goes on without "
                "them; events.jsonl keeps everything"
            )
            return []

    # ----------------------------------------------------------- helpers
    def _shutdown(self) -> None:
        """A barrier before exit: no rank leaves while rank 0 still saves."""
        try:
            self.world.barrier("shutdown")
        except distributed.DistributedError as e:
            self._fail(e)
            raise
        finally:
            self.world.close()

    def _save(self, backend: Any, game: Any, iteration: int, reason: str) -> None:
        if not self.is_main or iteration < 1:
            return
        events = self.run_dir / EVENTS_FILE
        state = {
            "seed": self.config.train.seed,
            "config_hash": ckpt.config_hash(self.config.to_dict()),
            "events_offset": events.stat().st_size if events.exists() else 0,
            "saved_at": time.time(),
        }
        try:
            folder = ckpt.save_checkpoint(
                self.run_dir, iteration, backend, state, game.state_dict(),
                keep=self.config.train.keep_checkpoints,
            )  # fmt: skip
        except ckpt.NonFiniteWeights as e:
            t = self.config.train
            raise Diverged(
                f"training diverged: {e}, most likely from too high a train.learning_rate "
                f"({t.learning_rate:g}) or train.beta ({t.beta:g}): lower them and start a new "
                "--run-dir (the last checkpoint holds finite weights)"
            ) from None
        self._emit("checkpoint", iteration=iteration, path=str(folder), reason=reason)

    def _fail(self, e: BaseException) -> None:
        """Record the error as the run's end (best effort: the disk may be full)."""
        if self.events is None:
            return
        tb = traceback.format_exc().strip().splitlines()[-12:]
        message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        try:
            self.events.emit("log", level="error", message=message)
            self.events.emit("run_end", status="error", error=message, traceback="\n".join(tb))
        except OSError:
            pass
        self.events.close()

    def _emit(self, type: str, **fields: Any) -> None:
        assert self.events is not None
        self.events.emit(type, **fields)

    def _log(self, message: str, level: str = "info", iteration: int | None = None) -> None:
        if self.is_main:
            self._emit("log", iteration=iteration, level=level, message=message)
            line = f"[{level}] {message}" if level != "info" else message
            print(line, file=sys.stderr, flush=True)

    def _print_next_commands(self) -> None:
        if not self.is_main:
            return
        run = shlex.quote(str(self.run_dir))
        print(
            "next:\n"
            f"  lsp-mlx tui --attach {run}                      # the run's dashboard\n"
            f"  lsp-mlx chat --adapter {run} --compare          # talk to it, beside the base model\n"
            f"  lsp-mlx export --adapter {run} --out DIR        # mlx-lm, PEFT and GGUF adapters",
            file=sys.stderr,
            flush=True,
        )

    def _print_games(self, games: list[Any]) -> None:
        if not self.is_main:
            return
        for game in [g for g in games if g.valid and g.answers][: self.config.train.print_games]:
            best, worst = game.best(), game.worst()
            print(f"    Q: {_clip(game.query, 110)}", file=sys.stderr)
            print(
                f"    best  (r={best.reward:.2f}, A={best.advantage:+.2f}): {_clip(best.text, 90)}",
                file=sys.stderr,
            )
            print(
                f"    worst (r={worst.reward:.2f}, A={worst.advantage:+.2f}): {_clip(worst.text, 90)}",
                file=sys.stderr,
                flush=True,
            )

    def _progress(self, it: int, m: dict[str, float], elapsed: float, start: int) -> None:
        if not self.is_main:
            return
        total = self.config.train.iterations
        done = it - start + 1
        eta = elapsed / done * (total - it)
        width = 20
        filled = int(width * it / total)
        bar = "#" * filled + "-" * (width - filled)
        print(
            f"[{bar}] {it}/{total} | solver {m.get('reward/solver_mean', 0):.3f} | "
            f"challenger {m.get('reward/challenger_mean', 0):+.3f} | loss {m['loss']:+.4f} | "
            f"kl {m['kl']:.4f} | {m['tokens_per_sec']:.0f} tok/s | {m['time/iteration']:.1f}s | "
            f"eta {eta / 60:.1f} min",
            file=sys.stderr,
            flush=True,
        )


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _parse(line: bytes) -> dict[str, Any]:
    """One events.jsonl line as a dict ({} when it is not one)."""
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}
