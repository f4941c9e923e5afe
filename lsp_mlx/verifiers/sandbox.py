"""Run untrusted Python (model-written code and tests) so that it can neither hang nor harm the
trainer, read its secrets or fake its own verdict (docs/sandbox.md has the threat model).

Each program runs in a fresh interpreter (`lsp_mlx.verifiers.sandbox_boot`), as ``main.py`` in
a fresh work folder that is its working directory, ``HOME`` and ``TMPDIR``, with an empty
environment (only ``PATH``, ``LANG`` and ``PYTHONIOENCODING``: the trainer's tokens never
reach it). Layers:

- **Operating system** (``isolation="os"``, the default; Linux): new user, mount, PID,
  network, IPC and UTS namespaces; a root of its own with only ``/usr`` and the Python
  install (read-only), ``/dev/null`` and four other device nodes, a fresh ``/proc`` that shows
  only the sandbox, a size-limited tmpfs work folder as the only writable folder; an
  unprivileged user (``nobody`` when the trainer is root) without any capability. Where the
  kernel refuses namespaces, ``run_python`` raises `SandboxUnavailable` (said once on stderr)
  unless the caller opted in to ``isolation="python"``. On macOS ``"os"`` means
  ``sandbox-exec`` with a deny-by-default profile (not tested here).
- **Time**: the namespace's init process kills every process of the sandbox at the
  wall-clock limit (a ``setsid`` daemon included); ``RLIMIT_CPU`` ends a busy loop; the
  trainer kills the whole tree as a backstop.
- **Resources**: ``RLIMIT_AS`` (memory), ``RLIMIT_FSIZE`` (any file, stdout and stderr
  included), ``RLIMIT_NPROC`` (no new process for the sandbox's user), ``RLIMIT_NOFILE``; only
  the first ``max_output_bytes`` of stdout and stderr are read back.
- **Audit hook** (PEP 578) in the program's interpreter: refuses process creation, signals,
  sockets, ctypes and writes outside the work folder with a clear ``PermissionError``. A
  speed bump, not a boundary (a program can reach around it); under ``isolation="python"``
  it is, with the empty environment and the limits, all there is.
- **Judge**: an optional second step (`Judge`) that runs in the sandbox's supervisor after
  the program and everything it started are dead, on what the program wrote to its result
  channel (fd ``CHANNEL_FD``) and on data the program never had: the program cannot patch
  the interpreter that decides, nor read what it is compared with.

No ``preexec_fn``: it may deadlock when the parent has threads, and the MLX trainer has them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lsp_mlx.errors import UserError

ISOLATIONS = ("os", "python")
CHANNEL_FD = 3  # the program's result channel, read by the judge
_BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_boot.py")
_STARTUP_SLACK_S = 10.0  # the trainer's backstop: limits plus this much


class SandboxUnavailable(UserError):
    """OS-level isolation was asked for and this machine does not offer it."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits and isolation of one sandboxed run (defaults suit short test programs)."""

    timeout_s: float = 5.0  # wall clock; every process of the sandbox is killed after it
    cpu_seconds: int = 5
    memory_mb: int = 512  # address space
    max_file_bytes: int = 1_000_000  # any file, stdout and stderr included
    max_output_bytes: int = 64_000  # how much of stdout/stderr is read back
    max_processes: int = 1  # RLIMIT_NPROC of the sandbox's user: no new processes
    isolate_network: bool = True  # "python" isolation only; "os" always has an empty network
    isolation: str = "os"  # "os" (namespaces; refused where missing) or "python" (opt-in)
    work_mb: int = 16  # size of the work folder (a tmpfs under "os")
    audit_hook: bool = True  # the in-interpreter second layer; off only to test the first alone
    judge_seconds: int = 2  # wall clock for the judge step


@dataclass(frozen=True)
class Judge:
    """A step run after the program, in the sandbox's supervisor, which never ran the program's
    code. ``code`` sees ``CHANNEL`` (text the program wrote to fd ``CHANNEL_FD``), ``DATA``
    (this ``data``, never visible to the program) and ``TIME_LIMIT``; it sets ``VERDICT``."""

    code: str
    data: str


@dataclass
class SandboxResult:
    returncode: int | None  # None when killed at the wall-clock timeout
    stdout: str
    stderr: str
    timed_out: bool
    output_truncated: bool
    seconds: float
    network: str  # "namespace" (empty network namespace) or "none" (only the audit hook)
    isolation: str = "os"  # "os", "sandbox-exec" (macOS) or "python"
    verdict: str | None = None  # the judge's VERDICT, when a judge ran
    judge_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def killed_by_signal(self) -> str | None:
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


_warned: set[str] = set()
_warn_lock = threading.Lock()


def _warn_once(key: str, message: str) -> None:
    with _warn_lock:
        if key in _warned:
            return
        _warned.add(key)
    print(f"lsp-mlx: warning: {message}", file=sys.stderr, flush=True)


def _unavailable(reason: str) -> SandboxUnavailable:
    message = (
        f"no OS-level sandbox for model-written code on this machine ({reason}); allow "
        "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or "
        "kernel.apparmor_restrict_unprivileged_userns=0), or set sqlm.sandbox_isolation: python "
        "to accept the weaker in-interpreter sandbox (docs/sandbox.md)"
    )
    _warn_once("unavailable", message)
    return SandboxUnavailable(message)


def sandbox_user() -> tuple[int, int]:
    """Who the sandbox is outside its namespace: nobody for a root trainer, else the trainer."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    import grp
    import pwd

    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        uid = 65534
    gid = 65534
    for name in ("nogroup", "nobody"):
        try:
            gid = grp.getgrnam(name).gr_gid
            break
        except KeyError:
            continue
    return uid, gid


def _read_only_paths() -> list[str]:
    """The Python install the program's interpreter imports from (``/usr`` is always there)."""
    paths = []
    for p in (sys.base_prefix, sys.base_exec_prefix):
        real = os.path.realpath(p)
        if real not in paths and real != "/":
            paths.append(real)
    return paths


def _macos_profile(workdir: str) -> str:
    """Deny by default; read the system and Python, write only the work folder; no network, no
    Mach services. Metadata (stat) is readable everywhere: ``realpath`` needs it."""
    python = [os.path.realpath(sys.prefix), os.path.dirname(_BOOT)] + _read_only_paths()
    read = " ".join(
        f'(subpath "{p}")' for p in ["/usr", "/System", "/Library", "/private/var/db"] + python
    )
    run = " ".join(f'(subpath "{p}")' for p in python)  # framework builds re-exec Python.app
    return (
        "(version 1)(deny default)(allow process-fork)(allow signal (target same-sandbox))"
        "(allow sysctl-read)(allow file-read-metadata)"
        f'(allow file-read* {read} (literal "/dev/null") (literal "/dev/urandom")'
        f' (literal "/private/etc/localtime") (subpath "{workdir}"))'
        f'(allow file-write* (subpath "{workdir}") (literal "/dev/null"))'
        f'(allow process-exec {run} (literal "{sys.executable}"))'
    )


def _read_capped(fh: tempfile._TemporaryFileWrapper[bytes], cap: int) -> tuple[str, bool]:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    data = fh.read(cap)
    return data.decode("utf-8", errors="replace"), size > cap


def run_python(
    code: str,
    limits: SandboxLimits | None = None,
    files: dict[str, str] | None = None,
    argv: list[str] | None = None,
    stdin: str | None = None,
    judge: Judge | None = None,
) -> SandboxResult:
    """Run ``code`` as ``main.py`` in a fresh work folder under the limits; never raises for
    anything the program does. ``files`` are extra text files written next to it first.
    Raises `SandboxUnavailable` when ``limits.isolation == "os"`` and the OS refuses it."""
    limits = limits or SandboxLimits()
    if limits.isolation not in ISOLATIONS:
        raise ValueError(f"sandbox isolation must be one of {ISOLATIONS}, got {limits.isolation!r}")
    all_files = {**(files or {}), "main.py": code}
    for name in all_files:
        if not name or os.path.basename(name) != name or name in (".", ".."):
            raise ValueError(f"sandbox file name {name!r} must be a plain file name")
    linux = sys.platform.startswith("linux")
    mode = limits.isolation
    if mode == "python":
        _warn_once(
            "python",
            "model-written code runs in the weaker in-interpreter sandbox "
            "(sqlm.sandbox_isolation: python); docs/sandbox.md says what it does not stop",
        )
    elif not linux and not (sys.platform == "darwin" and shutil.which("sandbox-exec")):
        raise _unavailable(f"no namespaces or sandbox-exec on {sys.platform}")
    workdir = tempfile.mkdtemp(prefix="lsp-sandbox-")
    os.chmod(workdir, 0o755 if mode == "os" and linux else 0o700)
    uid, gid = sandbox_user()
    cfg = {
        "isolation": mode if (mode == "python" or linux) else "python",
        "root": workdir,
        "workdir": workdir,
        "files": all_files,
        "read_only": _read_only_paths(),
        "map_uid": uid,
        "map_gid": gid,
        "drop_groups": os.geteuid() == 0,
        "work_bytes": int(limits.work_mb) * 1024 * 1024,
        "timeout_s": float(limits.timeout_s),
        "cpu_seconds": max(1, int(limits.cpu_seconds)),
        "memory_bytes": int(limits.memory_mb) * 1024 * 1024,
        "file_bytes": int(limits.max_file_bytes),
        "max_processes": int(limits.max_processes),
        "isolate_network": bool(limits.isolate_network),
        "audit_hook": bool(limits.audit_hook),
        "judge": judge.code if judge else None,
        "judge_seconds": max(1, int(limits.judge_seconds)),
        "argv": list(argv or []),
    }
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
    }
    command = [sys.executable, "-I", "-S", "-B", _BOOT]
    if mode == "os" and sys.platform == "darwin":
        command = ["sandbox-exec", "-p", _macos_profile(os.path.realpath(workdir))] + command
    try:
        with (
            tempfile.TemporaryFile() as cfg_file,
            tempfile.TemporaryFile() as judge_file,
            tempfile.TemporaryFile() as report_file,
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
        ):
            cfg["judge_fd"], cfg["report_fd"] = judge_file.fileno(), report_file.fileno()
            cfg_file.write(json.dumps(cfg).encode())
            cfg_file.seek(0)
            judge_file.write((judge.data if judge else "").encode())
            judge_file.seek(0)
            start = time.monotonic()
            proc = subprocess.Popen(
                command + [str(cfg_file.fileno())],
                cwd=workdir,
                env=env,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
                pass_fds=(cfg_file.fileno(), judge_file.fileno(), report_file.fileno()),
            )
            backstop = limits.timeout_s + limits.judge_seconds + _STARTUP_SLACK_S
            killed = False
            try:
                if stdin is not None:
                    proc.communicate(stdin.encode("utf-8"), timeout=backstop)
                else:
                    proc.wait(timeout=backstop)
            except subprocess.TimeoutExpired:
                killed = True
            finally:
                _kill_group(proc)
            seconds = time.monotonic() - start
            stdout, trunc_out = _read_capped(out, limits.max_output_bytes)
            stderr, trunc_err = _read_capped(err, limits.max_output_bytes)
            report_file.seek(0)
            lines = report_file.read(4_000_000).decode("utf-8", errors="replace").splitlines()
        try:  # a supervisor killed by the backstop may leave no report, or half of one
            report = json.loads(lines[-1]) if lines else {}
        except ValueError:
            report = {}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if "unavailable" in report:
        raise _unavailable(report["unavailable"])
    timed_out = killed or bool(report.get("timed_out"))
    if mode == "os" and sys.platform == "darwin":
        isolation = "sandbox-exec"
    else:
        isolation = report.get("isolation", mode)
    return SandboxResult(
        returncode=None if timed_out else report.get("returncode", proc.returncode),
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        output_truncated=trunc_out or trunc_err,
        seconds=seconds,
        network=report.get("network", "none"),
        isolation=isolation,
        verdict=report.get("verdict") if judge else None,
        judge_error=report.get("judge_error") if judge else None,
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the boot process's group: the outer, set-up and init processes (the namespace dies
    with its init, whatever the program did to its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie the kernel has not reaped
        pass


_problem: list[str | None] = []  # the probe's answer, once per process
_problem_lock = threading.Lock()


def isolation_problem() -> str | None:
    """Why ``isolation="os"`` cannot be had here (the one-line error with its fix), or None when
    it works: one trivial sandboxed run, once per process."""
    with _problem_lock:
        if not _problem:
            try:
                r = run_python("print('ok')", SandboxLimits(timeout_s=10))
                if r.stdout != "ok\n":  # e.g. a sandbox-exec profile this macOS refuses
                    tail = " ".join((r.stderr or f"exit status {r.returncode}").split())[-300:]
                    raise _unavailable(f"a trivial program failed in the sandbox: {tail}")
                _problem.append(None)
            except SandboxUnavailable as e:
                _problem.append(str(e))
        return _problem[0]


def check_isolation(isolation: str) -> None:
    """Refuse early (before any training) when ``isolation`` cannot be had on this machine,
    so that the first code task does not find out."""
    if isolation not in ISOLATIONS:
        raise UserError(f"sqlm.sandbox_isolation must be one of {', '.join(ISOLATIONS)}")
    problem = isolation_problem() if isolation == "os" else None
    if problem is not None:
        raise SandboxUnavailable(problem)


def run_many(
    programs: list[str], limits: SandboxLimits | None = None, workers: int | None = None
) -> list[SandboxResult]:
    """Run several programs concurrently (threads only wait on child processes)."""
    if not programs:
        return []
    workers = workers or min(len(programs), max(1, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda code: run_python(code, limits), programs))
