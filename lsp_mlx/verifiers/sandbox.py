"""Run untrusted Python (model-written code and tests) so that it can never hang or break the trainer.

Each program runs in a separate ``python -I -B`` process, in a fresh temporary folder that is
its working directory, ``HOME`` and ``TMPDIR``, and that is deleted afterwards. Layers:

- **Time**: a wall-clock timeout, after which the whole process group is killed (the child
  starts its own session), plus ``RLIMIT_CPU`` so a busy loop dies even if the parent stalls.
- **Memory**: ``RLIMIT_AS`` caps the address space; a huge allocation raises ``MemoryError``.
- **Processes**: ``RLIMIT_NPROC`` (a fork bomb gets ``EAGAIN``; note Linux does not apply it
  to root) and, for root too, an audit hook that refuses ``os.fork``, ``os.system``, ``exec``,
  ``posix_spawn``, ``subprocess`` and signals to other processes (the trainer among them).
- **Network**: on Linux the child first moves into a new, empty network namespace
  (``unshare(CLONE_NEWNET)``, allowed for root); in every case the audit hook refuses every
  ``socket.*`` event, so a network call fails even where the namespace is not permitted.
- **Files**: the audit hook refuses opening for write, creating, removing, renaming or
  changing any path outside the working folder; ``RLIMIT_FSIZE`` caps the size of any file.
- **Output**: stdout and stderr go to unnamed files; the size limit kills a program that
  prints without end, and only the first ``max_output_bytes`` are read back.

The limits are applied by a small bootstrap inside the child interpreter, not by a
``preexec_fn``: ``preexec_fn`` may deadlock when the parent has threads, and the MLX trainer
has them. Audit hooks (PEP 578) are a second layer, not a security boundary against a
determined attacker (ctypes and subprocess internals are refused at import for that reason);
the process limits, the namespace and the wall-clock kill are the hard guarantees.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

# Runs first in the child: limits, network namespace, audit hook, then the program.
# It is passed with -c, so it must stay self-contained.
_BOOTSTRAP = r"""
import json, os, sys
cfg = json.loads(sys.argv[1])
try:
    import resource
    for name, soft, hard in (
        ("RLIMIT_CPU", cfg["cpu_seconds"], cfg["cpu_seconds"] + 1),
        ("RLIMIT_AS", cfg["memory_bytes"], cfg["memory_bytes"]),
        ("RLIMIT_FSIZE", cfg["file_bytes"], cfg["file_bytes"]),
        ("RLIMIT_NPROC", cfg["max_processes"], cfg["max_processes"]),
        ("RLIMIT_NOFILE", 64, 64),
        ("RLIMIT_CORE", 0, 0),
    ):
        if hasattr(resource, name):
            try:
                resource.setrlimit(getattr(resource, name), (soft, hard))
            except (ValueError, OSError):
                pass
except ImportError:
    pass
net = "none"
if cfg["isolate_network"] and sys.platform.startswith("linux"):
    try:
        if hasattr(os, "unshare"):
            os.unshare(os.CLONE_NEWNET)
        else:
            import ctypes
            if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0:
                raise OSError(ctypes.get_errno(), "unshare")
        net = "namespace"
    except (OSError, AttributeError):
        pass
    for m in [m for m in sys.modules if m.startswith(("ctypes", "_ctypes"))]:
        del sys.modules[m]
    globals().pop("ctypes", None)


def _install(root):
    blocked = frozenset((
        "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
        "os.kill", "os.killpg", "signal.pthread_kill", "subprocess.Popen", "os.startfile",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
        "resource.setrlimit", "resource.prlimit", "sqlite3.connect", "os.chroot",
        "os.setuid", "os.setgid", "sys.addaudithook",
    ))
    blocked_modules = frozenset(("ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_testcapi"))
    mutate = {
        "os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.chmod": 1, "os.chown": 1,
        "os.truncate": 1, "os.utime": 1, "os.chflags": 1, "os.lchflags": 1, "os.mkfifo": 1,
        "os.mknod": 1, "shutil.rmtree": 1, "os.rename": 2, "os.link": 2, "os.symlink": 2,
        "shutil.copyfile": 2, "shutil.copytree": 2, "shutil.move": 2,
    }.get
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    realpath, fspath, prefix, devnull = os.path.realpath, os.fspath, root + os.sep, os.devnull

    def inside(path):
        if isinstance(path, int):
            return True
        try:
            p = fspath(path)
            if isinstance(p, bytes):
                p = p.decode("utf-8", "surrogateescape")
            p = realpath(p)
        except Exception:
            return False
        return p == root or p.startswith(prefix) or p == devnull

    def deny(what):
        raise PermissionError("sandbox: " + what + " is not allowed")

    def hook(event, args):
        if event == "open":
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            if ((flags & write_flags) or any(c in mode for c in "wax+")) and not inside(args[0]):
                deny("writing " + repr(args[0]))
        elif event == "import":
            if args[0] in blocked_modules:
                deny("importing " + args[0])
        elif event in blocked or event.startswith("socket."):
            deny(event)
        elif event == "object.__setattr__" and args[0] in guarded:
            deny("changing the sandbox")
        else:
            n = mutate(event)
            if n:
                for p in args[:n]:
                    if not inside(p):
                        deny(event + " on " + repr(p))

    guarded = (hook, inside, deny)
    sys.addaudithook(hook)


sys.dont_write_bytecode = True
_install(os.path.realpath(os.getcwd()))
sys.stderr.write(cfg["marker"] + " " + net + "\n")
sys.stderr.flush()
sys.argv = ["main.py"] + cfg["argv"]
with open("main.py", encoding="utf-8") as fh:
    src = fh.read()
del cfg, fh, net, _install
exec(compile(src, "main.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
"""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed run (defaults suit short test programs)."""

    timeout_s: float = 5.0  # wall clock; the process group is killed after it
    cpu_seconds: int = 5
    memory_mb: int = 512  # address space
    max_file_bytes: int = 1_000_000  # any file, stdout and stderr included
    max_output_bytes: int = 64_000  # how much of stdout/stderr is read back
    max_processes: int = 1  # RLIMIT_NPROC: no new processes (not applied to root by Linux)
    isolate_network: bool = True


@dataclass
class SandboxResult:
    returncode: int | None  # None when killed at the wall-clock timeout
    stdout: str
    stderr: str
    timed_out: bool
    output_truncated: bool
    seconds: float
    network: str  # "namespace" (empty net namespace) or "none" (only the audit hook blocks it)

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


_MARKER = "__lsp_mlx_sandbox__"


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
) -> SandboxResult:
    """Run ``code`` as ``main.py`` in a fresh temporary folder under the limits; never raises for
    anything the program does. ``files`` are extra text files written next to it first."""
    limits = limits or SandboxLimits()
    workdir = tempfile.mkdtemp(prefix="lsp-sandbox-")
    try:
        for name, text in {**(files or {}), "main.py": code}.items():
            path = os.path.join(workdir, name)
            if os.path.dirname(os.path.realpath(path)) != os.path.realpath(workdir):
                raise ValueError(f"sandbox file name {name!r} must be a plain file name")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        cfg = {
            "cpu_seconds": max(1, int(limits.cpu_seconds)),
            "memory_bytes": int(limits.memory_mb) * 1024 * 1024,
            "file_bytes": int(limits.max_file_bytes),
            "max_processes": int(limits.max_processes),
            "isolate_network": bool(limits.isolate_network),
            "argv": list(argv or []),
            "marker": _MARKER,
        }
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8",
        }
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", _BOOTSTRAP, json.dumps(cfg)],
                cwd=workdir,
                env=env,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
            timed_out = False
            try:
                if stdin is not None:
                    proc.communicate(stdin.encode("utf-8"), timeout=limits.timeout_s)
                else:
                    proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)
            seconds = time.monotonic() - start
            stdout, trunc_out = _read_capped(out, limits.max_output_bytes)
            stderr, trunc_err = _read_capped(err, limits.max_output_bytes)
        network = "none"
        if stderr.startswith(_MARKER):
            first, _, stderr = stderr.partition("\n")
            network = first.split(" ", 1)[1] if " " in first else "none"
        return SandboxResult(
            returncode=None if timed_out else proc.returncode,
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            output_truncated=trunc_out or trunc_err,
            seconds=seconds,
            network=network,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child's whole process group (anything it managed to start dies with it)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie the kernel has not reaped
        pass


def run_many(
    programs: list[str], limits: SandboxLimits | None = None, workers: int | None = None
) -> list[SandboxResult]:
    """Run several programs concurrently (threads only wait on child processes)."""
    if not programs:
        return []
    workers = workers or min(len(programs), max(1, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda code: run_python(code, limits), programs))
