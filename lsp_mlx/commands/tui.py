"""``lsp-mlx tui``: the terminal dashboard (the Textual app in `lsp_mlx.tui`).

Three ways in:

- ``lsp-mlx tui --config FILE [train flags]`` starts ``lsp-mlx train`` with those flags as a
  child process (the headless code path, unchanged) and shows it;
- ``lsp-mlx tui --attach RUN_DIR`` follows a run that is going on or finished;
- ``lsp-mlx tui`` opens a start screen listing the presets in ``configs/`` and recent runs.

The train flags come from `lsp_mlx.commands.train_flags`, so the commands
never disagree about them; this module imports neither MLX nor torch.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from lsp_mlx.commands.train_flags import add_train_arguments, config_from_args
from lsp_mlx.errors import UserError
from lsp_mlx.events import EVENTS_FILE
from lsp_mlx.tui.source import AttachedRun, LaunchedRun, RunSource


def _add_train_flags(p: argparse.ArgumentParser) -> list[argparse.Action]:
    before = set(map(id, p._actions))
    add_train_arguments(p)
    added = [a for a in p._actions if id(a) not in before]
    for action in added:
        action.required = False  # bare `lsp-mlx tui` opens the start screen instead
    return added


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tui",
        help="train with a live terminal dashboard, or watch a run",
        description=(
            "Watch self-play training in a terminal dashboard. With --config (and any train flags) "
            "it starts `lsp-mlx train` and shows it; with --attach RUN_DIR it follows an existing run; "
            "with neither it lists presets and recent runs. Keys: p pause/resume, c checkpoint, "
            "s stop, q quit, ? help."
        ),
    )
    p.add_argument(
        "--attach", metavar="RUN_DIR", help="follow the run in RUN_DIR (going on or finished)"
    )
    actions = _add_train_flags(p)
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=120.0,
        help="seconds q waits for the trainer's final checkpoint before signalling it (default 120)",
    )
    p.add_argument(
        "--runs-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="start screen: also list the runs in DIR (repeatable; ./runs and . are always listed)",
    )
    p.add_argument(
        "--screenshot",
        metavar="FILE.svg",
        help="with --attach: save the dashboard as an SVG picture and exit",
    )
    p.add_argument(
        "--size", default="120x36", help="terminal size WxH for --screenshot (default 120x36)"
    )
    p.set_defaults(run=run, tui_train_actions=actions)


def train_argv(args: argparse.Namespace, actions: list[argparse.Action]) -> list[str]:
    """The train flags the user gave, written back as a command line for the child."""
    out: list[str] = []
    for action in actions:
        value = getattr(args, action.dest, None)
        if value is None or value == action.default or value == []:
            continue
        flag = max(action.option_strings, key=len)
        if isinstance(
            action,
            (argparse._StoreConstAction, argparse._StoreTrueAction, argparse._StoreFalseAction),
        ):
            out.append(flag)
        elif isinstance(action, argparse._AppendAction):
            for item in value:
                out += [flag, str(item)]
        elif action.nargs == "?" and value == action.const:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return out


def resolve_run_dir(args: argparse.Namespace) -> Path:
    """The run folder `lsp-mlx train` will use for these flags; validates the config on the way."""
    return Path(config_from_args(args).train.run_dir)


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Fail before the dashboard opens for what the trainer would refuse (an occupied run folder)."""
    from lsp_mlx.trainer import check_run_dir as trainer_check

    trainer_check(run_dir, resume)


def launch_preset(preset: Path) -> LaunchedRun:
    """For the start screen: train ``preset``, in a fresh ``RUN_DIR-2``, ``-3``... if its folder holds a run."""
    parser = argparse.ArgumentParser(add_help=False)
    actions = _add_train_flags(parser)
    args = parser.parse_args(["--config", str(preset)])
    run_dir = resolve_run_dir(args)
    base, n = run_dir, 1
    while (run_dir / "events.jsonl").exists() or (run_dir / "config.yaml").exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    if run_dir != base:
        args.run_dir = str(run_dir)
    return LaunchedRun(train_argv(args, actions), run_dir)


def run(args: argparse.Namespace) -> int:
    from lsp_mlx.tui.app import DashboardApp

    forwarded = train_argv(args, args.tui_train_actions)
    if not math.isfinite(args.stop_timeout) or args.stop_timeout < 0:
        raise UserError(
            f"--stop-timeout {args.stop_timeout:g}: give the seconds to wait (>= 0), e.g. 120"
        )
    source: RunSource | None = None
    config_label = None
    if args.attach is not None:
        if not args.attach.strip():
            raise UserError(
                "--attach is empty: pass the --run-dir of a training run, e.g. runs/demo"
            )
        if forwarded:
            raise UserError(
                f"--attach follows an existing run: drop the training flags ({' '.join(forwarded)}) or drop --attach"
            )
        run_dir = Path(args.attach)
        if not run_dir.is_dir():
            raise UserError(
                f"run folder {str(run_dir)!r} not found: pass the --run-dir of a training run, e.g. runs/demo"
            )
        # an empty folder may be a run whose trainer is still loading the model: wait for it
        started = any((run_dir / f).exists() for f in (EVENTS_FILE, "config.yaml"))
        if not started and any(run_dir.iterdir()):
            raise UserError(
                f"{run_dir} holds no run (no {EVENTS_FILE}): pass the --run-dir of a training run, e.g. runs/demo"
            )
        source = AttachedRun(run_dir)
    elif forwarded:
        run_dir = resolve_run_dir(args)
        resume = bool(getattr(args, "resume", False))
        check_run_dir(run_dir, resume)
        source = LaunchedRun(forwarded, run_dir, resume=resume)
        config_label = getattr(args, "config", None)
    if args.screenshot:
        if Path(args.screenshot).suffix.lower() != ".svg":
            raise UserError(
                f"--screenshot {args.screenshot!r}: the dashboard is saved as SVG only; "
                "name the file with .svg (convert it to PNG with any SVG tool)"
            )
        if not isinstance(source, AttachedRun):
            raise UserError(
                "--screenshot needs --attach RUN_DIR: it draws an existing run and exits"
            )
        return _screenshot(DashboardApp(source), Path(args.screenshot), _size(args.size))

    app = DashboardApp(
        source,
        stop_timeout=args.stop_timeout,
        config_label=config_label,
        launcher=launch_preset,
        runs_dirs=[Path(d) for d in args.runs_dir],
    )
    try:
        code = app.run()
    finally:
        # However the app ended (even by an exception), a trainer it started is stopped cleanly.
        if (
            isinstance(app.source, LaunchedRun)
            and app.source.returncode is None
            and app.source.process
        ):
            print("lsp-mlx: stopping the trainer (it saves a checkpoint) ...", file=sys.stderr)
            app.source.stop_and_wait(args.stop_timeout)
    if app.source is not None:
        state = app.state
        last = state.checkpoints[-1].path if state.checkpoints else "none"
        print(
            f"run {app.source.run_dir}: {state.status}, iteration {state.iteration or 0}/{state.total or '?'}, last checkpoint: {last}"
        )
        if state.error:
            print(f"error: {state.error}", file=sys.stderr)
    return int(code or 0)


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if (
        not sep
        or not width.isdigit()
        or not height.isdigit()
        or int(width) < 20
        or int(height) < 10
    ):
        raise UserError(f"--size {text!r} must look like WIDTHxHEIGHT, e.g. 120x36")
    return int(width), int(height)


def _screenshot(app: object, path: Path, size: tuple[int, int]) -> int:
    from lsp_mlx.tui.app import DashboardApp

    assert isinstance(app, DashboardApp)
    try:  # before drawing: a folder that cannot take the file is a one-line error
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
    except OSError as e:
        raise UserError(
            f"--screenshot {str(path)!r}: cannot write there ({e.strerror}); "
            "pick a file in a folder you can write to"
        ) from None

    async def shoot(pilot: object) -> None:
        await pilot.pause()  # type: ignore[attr-defined]
        app.tick()
        await pilot.pause()  # type: ignore[attr-defined]
        app.save_screenshot(filename=path.name, path=str(path.parent))
        app.exit(0)

    app.run(headless=True, size=size, auto_pilot=shoot)  # type: ignore[arg-type]
    print(f"wrote {path}")
    return 0
