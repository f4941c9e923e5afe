"""The child side of `lsp_mlx.verifiers.sandbox`: a script run as its own interpreter
(``python -I -S -B sandbox_boot.py``), never imported by the package, standard library only.

Process tree under ``isolation="os"`` on Linux (docs/sandbox.md has the reasons):

- **outer** (the trainer's child, same user): forks ``setup`` and writes its user-namespace
  maps from outside (a root trainer maps the sandbox to ``nobody``, anyone else to their own
  uid), then waits for it.
- **setup**: new user, mount, PID, network, IPC and UTS namespaces; builds a root of its own
  (a small tmpfs with read-only binds of ``/usr``, the Python install and five device nodes,
  a size-limited tmpfs work folder) and becomes the mapped, unprivileged user; forks ``init``.
- **init** (PID 1 of the new PID namespace): mounts a fresh ``/proc``, pivots into the new
  root, drops every capability, then forks the **program** and supervises it: wall-clock
  deadline, then SIGKILL to every process of the namespace. It never runs the program's
  code, so after the program is dead it is the trusted place to run the optional *judge*
  on what the program wrote to its result channel and on data the program never saw.

Under ``isolation="python"`` (opt-in) the outer is the supervisor and the program runs in a
forked child with only the resource limits and the audit hook.

File descriptors from the parent: the config (JSON; its number is the script's argument),
the judge's private data and the report (one JSON line, written by the supervisor; their
numbers are in the config). The program gets the result channel as fd 3 and nothing else
beyond stdin/stdout/stderr.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time

CHANNEL_FD = 3  # in the program's process
MAX_CHANNEL_BYTES = 1_000_000

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 28, 38, 47
# noroot, no_setuid_fixup, keep_caps, no_cap_ambient_raise: all set or locked
SECUREBITS = 0b11101111
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "ppc64le": 280, "s390x": 280}
KEYCTL_JOIN_SESSION_KEYRING = 1
STATVFS_TO_MS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC))
TOP_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
NAMESPACE_KINDS = ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup")
DEVICES = ("null", "zero", "full", "random", "urandom")


REPORT_FD = -1  # set from the config


def _report(payload: dict) -> None:
    os.write(REPORT_FD, (json.dumps(payload) + "\n").encode())


# ---------------------------------------------------------------- Linux namespaces (ctypes)


class _Libc:
    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.lib = ctypes.CDLL(None, use_errno=True)
        c_str = ctypes.c_char_p
        self.lib.mount.argtypes = [c_str, c_str, c_str, ctypes.c_ulong, c_str]

    def check(self, rc: int, what: str) -> None:
        if rc != 0:
            err = self.ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def unshare(self, flags: int) -> None:
        self.check(self.lib.unshare(flags), "unshare")

    def mount(
        self, src: str | None, dst: str, fstype: str | None, flags: int, data: str = ""
    ) -> None:
        enc = lambda s: s.encode() if s is not None else None  # noqa: E731
        self.check(
            self.lib.mount(enc(src), enc(dst), enc(fstype), flags, enc(data) if data else None),
            f"mount {dst}",
        )

    def prctl(self, *args: int) -> int:
        c = self.ctypes
        return self.lib.prctl(*[c.c_ulong(a) for a in args] + [c.c_ulong(0)] * (5 - len(args)))

    def pivot_root(self, new: str, old: str) -> None:
        machine = os.uname().machine
        number = PIVOT_ROOT.get(machine)
        if number is None:
            raise OSError(0, f"pivot_root: unknown syscall number on {machine}")
        self.check(self.lib.syscall(number, new.encode(), old.encode()), "pivot_root")

    def new_session_keyring(self) -> None:
        """Leave the trainer's session keyring (its keys are readable by whoever possesses
        it) for a new, empty one."""
        number = KEYCTL.get(os.uname().machine)
        if number is None:
            raise OSError(0, f"keyctl: unknown syscall number on {os.uname().machine}")
        if self.lib.syscall(number, KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
            self.check(-1, "keyctl join session keyring")

    def umount_detach(self, path: str) -> None:
        self.check(self.lib.umount2(path.encode(), MNT_DETACH), f"umount {path}")

    def drop_capabilities(self) -> None:
        """Bounding set, securebits, ambient set, then capset to nothing: no capability now and
        none regained by exec (uid 0 inside the namespace stays powerless)."""
        for cap in range(64):
            if self.prctl(PR_CAPBSET_DROP, cap) != 0:
                break
        self.check(self.prctl(PR_SET_SECUREBITS, SECUREBITS), "securebits")
        self.prctl(PR_CAP_AMBIENT, 4)  # PR_CAP_AMBIENT_CLEAR_ALL
        self.check(self.prctl(PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")
        c = self.ctypes

        class Header(c.Structure):
            _fields_ = [("version", c.c_uint32), ("pid", c.c_int)]

        data = (c.c_uint32 * 6)()
        self.check(self.lib.capset(c.byref(Header(0x20080522, 0)), data), "capset")


def _bind_ro(libc: _Libc, src: str, dst: str) -> None:
    libc.mount(src, dst, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    host = os.statvfs(src).f_flag
    for st, ms in STATVFS_TO_MS:  # flags locked on the source must be kept on a remount
        if host & st:
            flags |= ms
    libc.mount(None, dst, None, flags)


def _open_sources(cfg: dict) -> list[tuple[str, str, int]]:
    """O_PATH handles on what the new root shows, opened while still the host's own user (a
    root trainer's Python may live under /root, which nobody cannot traverse).
    Returns (kind, path, fd) with kind "link:<target>", "dir" or "dev"."""
    sources = []
    for top in TOP_DIRS:
        host = "/" + top
        if os.path.islink(host):
            sources.append(("link:" + os.readlink(host), host, -1))
        elif os.path.isdir(host):
            sources.append(("dir", host, os.open(host, os.O_PATH | os.O_DIRECTORY)))
    for path in cfg["read_only"]:
        if os.path.isdir(path) and not any(
            path == p or path.startswith(p + "/") for _, p, _ in sources
        ):
            sources.append(("dir", path, os.open(path, os.O_PATH | os.O_DIRECTORY)))
    for name in DEVICES:
        if os.path.exists("/dev/" + name):
            sources.append(("dev", "/dev/" + name, os.open("/dev/" + name, os.O_PATH)))
    return sources


def _build_root(libc: _Libc, cfg: dict, sources: list[tuple[str, str, int]]) -> None:
    """The new root at cfg["root"] (an empty host folder): only this mount namespace sees it."""
    root = cfg["root"]
    libc.mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
    for kind, path, fd in sources:
        target = root + path
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if kind.startswith("link:"):
            os.symlink(kind[5:], target)
            continue
        handle = f"/proc/self/fd/{fd}"
        if kind == "dir":
            os.mkdir(target)
            _bind_ro(libc, handle, target)
        else:
            open(target, "w").close()
            libc.mount(handle, target, None, MS_BIND)
        os.close(fd)
    os.mkdir(root + "/proc")
    os.makedirs(root + "/tmp", exist_ok=True)


def _enter_namespaces(cfg: dict) -> None:
    """Returns only in the namespace's init process, inside the new root, without capabilities;
    the outer and setup processes wait here and exit with their child's status."""
    libc = _Libc()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    setup = os.fork()
    if setup:
        os.close(ready_w)
        os.close(go_r)
        msg = os.read(ready_r, 512)
        if msg != b"ok":
            os.waitpid(setup, 0)
            _report({"unavailable": msg.decode(errors="replace") or "the setup process died"})
            os._exit(0)
        try:
            uid, gid = cfg["map_uid"], cfg["map_gid"]
            if not cfg["drop_groups"]:
                with open(f"/proc/{setup}/setgroups", "w") as fh:
                    fh.write("deny")
            with open(f"/proc/{setup}/uid_map", "w") as fh:
                fh.write(f"0 {uid} 1")
            with open(f"/proc/{setup}/gid_map", "w") as fh:
                fh.write(f"0 {gid} 1")
            os.write(go_w, b"1")
        except OSError as e:
            os.kill(setup, signal.SIGKILL)
            os.waitpid(setup, 0)
            _report({"unavailable": f"user namespace maps: {e}"})
            os._exit(0)
        _, status = os.waitpid(setup, 0)
        os._exit(0 if status == 0 else 1)

    # setup
    os.close(ready_r)
    os.close(go_w)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        libc.new_session_keyring()
        libc.unshare(
            CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
        )
    except OSError as e:
        os.write(ready_w, f"new namespaces refused ({e})".encode()[:500])
        os._exit(1)
    os.write(ready_w, b"ok")
    if os.read(go_r, 1) != b"1":
        os._exit(1)
    try:
        libc.mount(None, "/", None, MS_REC | MS_PRIVATE)
        sources = _open_sources(cfg)
        if cfg["drop_groups"]:
            os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)  # now the mapped user outside: nobody for a root trainer
        _build_root(libc, cfg, sources)
        work = cfg["root"] + cfg["workdir"]
        os.makedirs(work)
        libc.mount(
            "tmpfs",
            work,
            "tmpfs",
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            f"size={cfg['work_bytes']},nr_inodes=1024,mode=0700",
        )
        for name, text in cfg["files"].items():
            with open(os.path.join(work, name), "w", encoding="utf-8") as fh:
                fh.write(text)
    except Exception as e:  # noqa: BLE001 - nothing ran: the caller refuses, never a traceback
        _report({"unavailable": f"sandbox set-up failed: {type(e).__name__}: {e}"})
        os._exit(1)
    init = os.fork()
    if init:
        _, status = os.waitpid(init, 0)
        os._exit(0 if status == 0 else 1)

    # init: PID 1 of the new namespace
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        root = cfg["root"]
        libc.mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        os.chdir(root)
        libc.pivot_root(".", ".")
        libc.umount_detach(".")  # the host's root, stacked under ours
        os.chdir("/")
        libc.mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        for kind in NAMESPACE_KINDS:  # the program may not nest namespaces of its own
            with open(f"/proc/sys/user/max_{kind}_namespaces", "w") as fh:
                fh.write("0")
        libc.drop_capabilities()
        libc.prctl(PR_SET_DUMPABLE, 0)  # no ptrace or /proc/1/mem from the program
        os.chdir(cfg["workdir"])
    except Exception as e:  # noqa: BLE001
        _report({"unavailable": f"sandbox set-up failed: {type(e).__name__}: {e}"})
        os._exit(1)


def _python_mode_workdir(cfg: dict) -> None:
    os.chdir(cfg["workdir"])
    for name, text in cfg["files"].items():
        with open(name, "w", encoding="utf-8") as fh:
            fh.write(text)


# ---------------------------------------------------------------- the program's process


_HOOK = r"""
def _install(root):
    import os, sys
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
"""


def _limit(cfg: dict) -> None:
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


def _run_program(cfg: dict, channel_w: int | None) -> None:
    """In the forked program process: only stdio and the channel stay open, limits, hook, run."""
    try:
        os.setpgid(0, 0)
        if channel_w is not None:
            if channel_w != CHANNEL_FD:
                os.dup2(channel_w, CHANNEL_FD)
                os.close(channel_w)
            os.closerange(CHANNEL_FD + 1, 1 << 16)
        else:
            os.closerange(3, 1 << 16)
        _limit(cfg)
        for m in [m for m in sys.modules if m.startswith(("ctypes", "_ctypes"))]:
            del sys.modules[m]
        sys.dont_write_bytecode = True
        if cfg["audit_hook"]:
            namespace: dict = {}
            exec(_HOOK, namespace)
            namespace["_install"](os.path.realpath(os.getcwd()))
        sys.argv = ["main.py"] + cfg["argv"]
        with open("main.py", encoding="utf-8") as fh:
            src = fh.read()
        code = compile(src, "main.py", "exec")
    except BaseException as e:  # noqa: BLE001 - a set-up failure is the program's failure
        os.write(2, f"sandbox: {type(e).__name__}: {e}\n".encode())
        os._exit(120)
    del cfg
    try:
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as e:
        code_ = e.code
        if code_ is None:
            status = 0
        elif isinstance(code_, int):
            status = code_ & 0xFF
        else:
            sys.stderr.write(str(code_) + "\n")
            status = 1
        _flush_and_exit(status)
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        _flush_and_exit(1)
    _flush_and_exit(0)


def _flush_and_exit(status: int) -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass
    os._exit(status)


# ---------------------------------------------------------------- the supervisor


def _wait(pid: int, channel_r: int | None, deadline: float) -> tuple[int | None, bytes]:
    """Wait for the program until the deadline, reading its channel meanwhile.
    Returns (wait status or None when the deadline passed, channel bytes)."""
    chunks: list[bytes] = []
    size = 0
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = None
    status = None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            status = None
            break
        fds = [fd for fd in (pidfd, channel_r) if fd is not None]
        ready, _, _ = select.select(fds, [], [], left if pidfd is not None else min(left, 0.005))
        if channel_r is not None and channel_r in ready:
            data = os.read(channel_r, 65536)
            if not data:
                os.close(channel_r)
                channel_r = None
            elif size < MAX_CHANNEL_BYTES:
                chunks.append(data)
                size += len(data)
    if channel_r is not None:  # what the program wrote before it ended
        os.set_blocking(channel_r, False)
        try:
            while size < MAX_CHANNEL_BYTES and (data := os.read(channel_r, 65536)):
                chunks.append(data)
                size += len(data)
        except BlockingIOError:
            pass
        os.close(channel_r)
    if pidfd is not None:
        os.close(pidfd)
    return status, b"".join(chunks)[:MAX_CHANNEL_BYTES]


def _kill_all(pid: int, namespace_init: bool) -> None:
    try:
        if namespace_init:
            os.kill(-1, signal.SIGKILL)  # every process of the namespace but this one
        else:
            os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0 and not namespace_init:
                break
        except ChildProcessError:
            break
        if namespace_init:
            time.sleep(0)  # the kill is asynchronous: reap until no child is left


def _judge(cfg: dict, channel: bytes) -> dict:
    """Run the judge (never the program's code) on the channel and the private data."""
    with os.fdopen(cfg["judge_fd"], "rb") as fh:
        data = fh.read().decode("utf-8")
    _limit({**cfg, "cpu_seconds": int(time.process_time()) + cfg["judge_seconds"] + 1})

    def alarm(signum: int, frame: object) -> None:
        raise TimeoutError("judge time limit")

    signal.signal(signal.SIGALRM, alarm)
    namespace = {
        "__name__": "__judge__",
        "CHANNEL": channel.decode("utf-8", errors="replace"),
        "DATA": data,
        "VERDICT": "",
        "TIME_LIMIT": float(cfg["judge_seconds"]),
    }
    devnull = open(os.devnull, "w")
    out, err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = devnull
    try:
        signal.setitimer(signal.ITIMER_REAL, cfg["judge_seconds"])
        exec(compile(cfg["judge"], "judge.py", "exec"), namespace)
        error = None
    except BaseException as e:  # noqa: BLE001 - reported, never raised
        error = f"{type(e).__name__}: {e}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdout, sys.stderr = out, err
    verdict = namespace.get("VERDICT")
    return {"verdict": verdict if isinstance(verdict, str) else "", "judge_error": error}


def _supervise(cfg: dict, namespace_init: bool, network: str) -> None:
    start = time.monotonic()
    channel_r = channel_w = None
    if cfg["judge"] is not None:
        channel_r, channel_w = os.pipe()
    program = os.fork()
    if program == 0:
        if channel_r is not None:
            os.close(channel_r)
        _run_program(cfg, channel_w)
    try:  # also here, so that a kill right after the fork finds the group
        os.setpgid(program, program)
    except OSError:
        pass
    if channel_w is not None:
        os.close(channel_w)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    status, channel = _wait(program, channel_r, start + cfg["timeout_s"])
    _kill_all(program, namespace_init)
    if status is None:
        try:
            _, status = os.waitpid(program, 0)
        except ChildProcessError:
            status = None
        timed_out = True
    else:
        timed_out = False
    report = {
        "returncode": None if status is None else os.waitstatus_to_exitcode(status),
        "timed_out": timed_out,
        "isolation": cfg["isolation"],
        "network": network,
        "seconds": time.monotonic() - start,
    }
    if cfg["judge"] is not None:
        report.update(_judge(cfg, channel))
    _report(report)
    os._exit(0)


def main() -> None:
    global REPORT_FD
    with os.fdopen(int(sys.argv[1]), "rb") as fh:
        cfg = json.loads(fh.read())
    REPORT_FD = cfg["report_fd"]
    os.umask(0o022)
    if cfg["isolation"] == "os":
        _enter_namespaces(cfg)
        _supervise(cfg, namespace_init=True, network="namespace")
    else:
        _python_mode_workdir(cfg)
        network = "none"
        if sys.platform.startswith("linux"):
            libc = _Libc()
            # keeps a program of the same (non-root) user out of /proc/<supervisor>/fd
            libc.prctl(PR_SET_DUMPABLE, 0)
            libc.new_session_keyring()
            if cfg["isolate_network"]:
                try:  # an empty network namespace, where the kernel lets this user make one
                    libc.unshare(CLONE_NEWNET)
                    network = "namespace"
                except OSError:
                    pass
        _supervise(cfg, namespace_init=False, network=network)


if __name__ == "__main__":
    main()
