"""Model-written code against the sandbox, as an attacker would write it (issue 14).

Every escape and every faked pass from the issue, and more, runs through the same API the code
verifier uses (`run_python`, `run_tests`), with real processes, files, sockets and signals.
The escape programs run with the audit hook off: the hook is a speed bump a program can reach
around (one test below does exactly that), so containment must come from the OS layer alone.
Each program prints ``ESCAPED ...`` when an attempt succeeds; the tests also check the host
side (files, processes, sockets) for harm. docs/sandbox.md describes the layers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lsp_mlx.errors import UserError
from lsp_mlx.verifiers.code import run_tests
from lsp_mlx.verifiers.sandbox import (
    SandboxLimits,
    SandboxUnavailable,
    check_isolation,
    isolation_problem,
    run_python,
    sandbox_user,
)
from lsp_mlx.verifiers.sandbox_boot import KEYCTL

ROOT = Path(__file__).resolve().parents[1]
LINUX = sys.platform.startswith("linux")
pytestmark = pytest.mark.skipif(
    not LINUX or isolation_problem() is not None,
    reason=f"OS-level isolation is Linux-only and must be available: {isolation_problem()}",
)

# the OS layer alone: no audit hook, processes allowed where a test needs them
BARE = SandboxLimits(timeout_s=3.0, cpu_seconds=3, audit_hook=False)
SECRET = "hf_lsp_mlx_escape_test_7f3a9c"


def run_bare(code: str, **limits) -> str:
    """Run ``code`` with the audit hook off; returns its stdout (a traceback on stderr quotes
    the source line, ``ESCAPED`` included)."""
    return run_python(code, SandboxLimits(**{**BARE.__dict__, **limits})).stdout


def host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


# ------------------------------------------------------------------ secrets and the host's view


def test_the_trainers_environment_and_command_line_never_reach_the_program(tmp_path: Path):
    """A real 'trainer' process holding HF_TOKEN in its environment runs programs that look for
    it everywhere: their own environment, every /proc/*/environ and cmdline, the parent's cwd."""
    attacks = [
        "import os\nprint(dict(os.environ))",
        "print(open('/proc/self/environ').read())",
        "import os\nprint(open(f'/proc/{os.getppid()}/environ').read())",
        "import os\nprint(open(f'/proc/{os.getppid()}/cmdline').read())",
        "import os\nprint(os.readlink(f'/proc/{os.getppid()}/cwd'))\n"
        "print(os.listdir(os.readlink(f'/proc/{os.getppid()}/cwd')))",
        "import os\nfor p in os.listdir('/proc'):\n"
        "    for f in ('environ', 'cmdline'):\n"
        "        try:\n"
        "            print(p, open(f'/proc/{p}/{f}', 'rb').read())\n"
        "        except OSError as e:\n"
        "            print(p, f, type(e).__name__)",
    ]
    trainer = (
        "import json, sys\n"
        "from lsp_mlx.verifiers.sandbox import SandboxLimits, run_python\n"
        "out = [run_python(code, SandboxLimits(audit_hook=False)) for code in json.load(sys.stdin)]\n"
        "print(json.dumps([[r.stdout, r.stderr] for r in out]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", trainer, "--marker-arg-lsp-trainer"],
        input=json.dumps(attacks),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_TOKEN": SECRET, "WANDB_API_KEY": SECRET},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    outputs = json.loads(proc.stdout)
    assert len(outputs) == len(attacks)
    for (stdout, stderr), code in zip(outputs, attacks):
        seen = stdout + stderr
        assert SECRET not in seen, code
        assert "--marker-arg-lsp-trainer" not in seen and "pytest" not in seen, code
        assert "pyproject.toml" not in seen, code  # the trainer's working folder
    assert "'PATH': '/usr/bin:/bin'" in outputs[0][0]  # the first one did run


ADD_KEY = {"x86_64": 248, "aarch64": 217}


@pytest.mark.skipif(
    os.uname().machine not in ADD_KEY, reason="add_key number known for x86_64/arm64"
)
def test_the_trainers_session_keyring_is_left_behind():
    """A key in the trainer's session keyring (possessed, so readable through it) is out of
    reach, even by its id, under both isolations."""
    keyctl = KEYCTL[os.uname().machine]
    trainer = (
        "import ctypes, json\n"
        "from lsp_mlx.verifiers.sandbox import SandboxLimits, run_python\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"libc.syscall({keyctl}, 1, None)\n"  # a session keyring of this trainer's own
        f"kid = libc.syscall({ADD_KEY[os.uname().machine]}, b'user', b'lsp_secret', "
        f"{SECRET.encode()!r}, {len(SECRET)}, ctypes.c_int(-3))\n"
        "assert kid > 0, ctypes.get_errno()\n"
        "program = (\n"
        "    'import ctypes\\n'\n"
        "    'libc = ctypes.CDLL(None, use_errno=True)\\n'\n"
        f'    \'found = libc.syscall({keyctl}, 10, ctypes.c_int(-3), b"user", b"lsp_secret", 0)\\n\'\n'
        "    'ids = [found, %d]\\n' % kid +\n"
        "    'try:\\n'\n"
        "    '    ids += [int(line.split()[0], 16) for line in open(\"/proc/keys\")]\\n'\n"
        "    'except OSError:\\n'\n"
        "    '    pass\\n'\n"
        "    'for i in ids:\\n'\n"
        "    '    buf = ctypes.create_string_buffer(200)\\n'\n"
        f"    '    n = libc.syscall({keyctl}, 11, i, buf, 200)\\n'\n"
        "    '    print(i, n, buf.raw[:max(n, 0)])\\n'\n"
        ")\n"
        "out = [run_python(program, SandboxLimits(audit_hook=False, isolation=iso))\n"
        "       for iso in ('os', 'python')]\n"
        "print(json.dumps([r.stdout + r.stderr for r in out]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", trainer], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    for out in json.loads(proc.stdout.splitlines()[-1]):
        assert SECRET not in out and out.count(" -1 b''") >= 2, out


def test_root_only_files_and_the_hosts_file_system_are_not_there(tmp_path: Path):
    (tmp_path / "secret.txt").write_text(SECRET)
    other = Path(tempfile.mkdtemp(prefix="lsp-sandbox-"))  # a folder like another run's
    (other / "solution.py").write_text(SECRET)
    try:
        for target in [
            "/etc/shadow",
            "/etc/passwd",
            str(tmp_path / "secret.txt"),
            str(other / "solution.py"),
            str(ROOT / "README.md"),
            os.path.expanduser("~/.cache/huggingface/token"),
        ]:
            out = run_bare(f"print('ESCAPED', open({target!r}).read())")
            assert "ESCAPED" not in out and SECRET not in out, target
        out = run_bare("import os\nprint(sorted(os.listdir('/')), os.listdir('/tmp'))")
        assert "etc" not in out and "work" not in out and other.name not in out
    finally:
        shutil.rmtree(other)


def test_a_running_sandbox_cannot_see_another_ones_work_folder():
    holder = (
        "import os, time\n"
        f"open('secret.txt', 'w').write({SECRET!r})\n"
        "print(os.getcwd(), flush=True)\n"
        "time.sleep(2)\n"
    )
    thief = (
        "import glob, os, time\n"
        "time.sleep(0.7)\n"
        "for path in glob.glob('/tmp/*/secret.txt') + glob.glob('/proc/*/cwd/secret.txt'):\n"
        "    print('ESCAPED', open(path).read())\n"
        "print(sorted(os.listdir('/tmp')), sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        held, stolen = pool.map(lambda c: run_bare(c, timeout_s=5.0), (holder, thief))
    assert held.strip().startswith("/tmp/lsp-sandbox-")
    assert "ESCAPED" not in stolen and SECRET not in stolen
    assert os.path.basename(held.strip()) not in stolen
    assert "['1', '2']" in stolen  # its own supervisor and itself: nothing else


def test_the_program_is_an_unprivileged_user_without_capabilities():
    out = run_bare(
        "import os\n"
        "status = open('/proc/self/status').read()\n"
        "print([l for l in status.splitlines() if l.startswith(('CapEff', 'CapPrm', 'CapBnd', 'NoNewPrivs'))])\n"
        "print(open('/proc/self/uid_map').read().split())\n"
    )
    assert "CapEff:\\t0000000000000000" in out and "CapBnd:\\t0000000000000000" in out
    assert "NoNewPrivs:\\t1" in out
    inside, outside, _ = out.splitlines()[1].strip("[]").replace("'", "").split(", ")
    assert inside == "0"
    if os.geteuid() == 0:
        assert int(outside) != 0, "a root trainer's sandbox must not be root outside"
    else:
        assert int(outside) == os.geteuid()


@pytest.mark.skipif(
    not os.path.exists("/usr/bin/mount") or not os.stat("/usr/bin/mount").st_mode & 0o4000,
    reason="needs a setuid /usr/bin/mount",
)
def test_a_setuid_binary_gives_no_privilege():
    r = run_python(
        "import os\nos.execv('/usr/bin/mount', ['mount', '-t', 'tmpfs', 'x', '/usr'])", BARE
    )
    assert r.returncode != 0 and "permission denied" in r.stderr


# ------------------------------------------------------------------ files outside the work folder


@pytest.mark.parametrize(
    "attack",
    [
        "fd = os.open(HOST, os.O_RDONLY)\nos.mkdir('made', dir_fd=fd)",
        "fd = os.open(HOST, os.O_RDONLY)\nos.close(os.open('made', os.O_CREAT | os.O_WRONLY, dir_fd=fd))",
        "fd = os.open(HOST, os.O_RDONLY)\nos.unlink('victim.txt', dir_fd=fd)",
        "fd = os.open(HOST, os.O_RDONLY)\nos.rename('victim.txt', 'moved', src_dir_fd=fd, dst_dir_fd=fd)",
        "fd = os.open('/', os.O_RDONLY)\nos.mkdir('made', dir_fd=fd)",
        "os.chdir('/tmp')\nopen('made', 'w').write('x')",
        "os.symlink(HOST, 'link')\nopen('link/made', 'w').write('x')",
        "os.symlink(HOST + '/victim.txt', 'link')\nopen('link', 'w').write('x')",
        "open('/usr/made', 'w').write('x')",
        "open('/proc/sysrq-trigger', 'w').write('b')",
        "open('/dev/shm/made', 'w').write('x')",
        "os.open(f'/proc/1/root{HOST}/made', os.O_CREAT | os.O_WRONLY)",
        "os.open(f'/proc/{os.getppid()}/cwd/made', os.O_CREAT | os.O_WRONLY)",
    ],
)
def test_no_write_reaches_the_host(tmp_path: Path, attack: str):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    code = f"import os\nHOST = {str(tmp_path)!r}\n{attack}\nprint('ESCAPED')"
    out = run_bare(code)
    assert "ESCAPED" not in out
    assert victim.read_text() == "original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim.txt"]
    assert not os.path.exists("/tmp/made") and not os.path.exists("/dev/shm/made")


def test_filling_the_disk_stops_at_the_work_folders_size():
    code = (
        "import os\nn = 0\n"
        "try:\n"
        "    while True:\n"
        "        with open(f'f{n}', 'wb') as fh:\n"
        "            fh.write(b'x' * 500_000)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print(n, e.errno)\n"
    )
    r = run_python(code, SandboxLimits(timeout_s=10, work_mb=4, audit_hook=False))
    written, errno_ = r.stdout.split()
    assert int(written) <= 8 and int(errno_) == 28  # ENOSPC at 4 MB


# ------------------------------------------------------------------ signals and other processes


def test_signals_never_reach_the_trainer_or_its_other_processes():
    sentinel = subprocess.Popen(["sleep", "60"])
    try:
        targets = [os.getpid(), sentinel.pid]
        code = (
            "import os, signal\n"
            "assert os.getpid() < 10, 'not in a PID namespace: refusing to kill(-1)'\n"
            f"for pid in {targets}:\n"
            "    for attempt in ('kill', 'pidfd', 'pgrp'):\n"
            "        try:\n"
            "            if attempt == 'kill':\n"
            "                os.kill(pid, signal.SIGKILL)\n"
            "            elif attempt == 'pidfd':\n"
            "                signal.pidfd_send_signal(os.pidfd_open(pid), signal.SIGKILL)\n"
            "            else:\n"
            "                os.killpg(pid, signal.SIGKILL)\n"
            "            print('sent', attempt, pid)\n"
            "        except OSError as e:\n"
            "            print('refused', attempt, pid, type(e).__name__)\n"
            "signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGKILL)\n"
            "os.kill(-1, signal.SIGKILL)\n"
        )
        out = run_bare(code)
        assert "refused" in out, out
        time.sleep(0.2)
        assert sentinel.poll() is None, "the sandbox killed a process outside it"
    finally:
        sentinel.kill()
        sentinel.wait()


def test_ptrace_and_memory_of_the_supervisor_are_refused():
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "for pid in (1, os.getppid()):\n"
        "    if libc.ptrace(16, pid, None, None) == 0:\n"  # PTRACE_ATTACH
        "        print('ESCAPED ptrace', pid)\n"
        "    try:\n"
        "        open(f'/proc/{pid}/mem', 'rb').read(1)\n"
        "        print('ESCAPED mem', pid)\n"
        "    except OSError:\n"
        "        pass\n"
        "    try:\n"
        "        print('ESCAPED fd', pid, os.listdir(f'/proc/{pid}/fd'))\n"
        "    except OSError:\n"
        "        pass\n"
        "print('done')\n"
    )
    out = run_bare(code)
    assert "done" in out and "ESCAPED" not in out


def test_a_setsid_daemon_dies_with_the_sandbox():
    marker = f"{time.time_ns() % 10**6}.4242"
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv('/usr/bin/sleep', ['sleep', '{marker}'])\n"
        "    os._exit(0)\n"
        "time.sleep(0.5)\n"
        "print('daemon started', any(b'sleep' in open(f'/proc/{p}/cmdline', 'rb').read()\n"
        "      for p in os.listdir('/proc') if p.isdigit()))\n"
    )
    out = run_bare(code, max_processes=64)
    assert "daemon started True" in out, out
    time.sleep(0.3)
    assert host_processes_with(marker) == [], "a daemon outlived the sandbox"


def test_a_hung_sandbox_dies_whole_at_the_wall_clock():
    marker = f"{time.time_ns() % 10**6}.4343"
    code = (
        "import os, signal\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    os.execv('/usr/bin/sleep', ['sleep', '{marker}'])\n"
        "while True:\n"
        "    pass\n"
    )
    start = time.monotonic()
    r = run_python(
        code, SandboxLimits(timeout_s=1.0, cpu_seconds=30, audit_hook=False, max_processes=64)
    )
    assert r.timed_out and time.monotonic() - start < 6
    time.sleep(0.3)
    assert host_processes_with(marker) == []


# ------------------------------------------------------------------ network and IPC


def test_no_socket_reaches_the_host():
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    abstract_name = f"\0lsp-escape-{os.getpid()}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(abstract_name)
    abstract.listen(4)
    path = Path(tempfile.mkdtemp()) / "sock"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(path))
    unix.listen(4)
    port = tcp.getsockname()[1]
    accepted: list[str] = []

    done = threading.Event()

    def accept(server: socket.socket, name: str) -> None:
        server.settimeout(0.1)
        while not done.is_set():
            try:
                server.accept()
                accepted.append(name)
                return
            except OSError:
                continue

    threads = [
        threading.Thread(target=accept, args=(s, n))
        for s, n in ((tcp, "tcp"), (abstract, "abstract"), (unix, "unix"))
    ]
    for t in threads:
        t.start()
    try:
        addresses = [
            (socket.AF_INET, ("127.0.0.1", port)),
            (socket.AF_UNIX, abstract_name),
            (socket.AF_UNIX, str(path)),
            (socket.AF_INET6, ("::1", port)),
        ]
        code = (
            "import socket\n"
            f"for family, address in {[(int(f), a) for f, a in addresses]!r}:\n"
            "    try:\n"
            "        s = socket.socket(family, socket.SOCK_STREAM)\n"
            "        s.settimeout(1)\n"
            "        s.connect(address)\n"
            "        print('ESCAPED', address)\n"
            "    except OSError as e:\n"
            "        print('refused', type(e).__name__)\n"
        )
        out = run_bare(code)
    finally:
        time.sleep(0.2)  # a connection the program made is accepted by now
        done.set()
        for t in threads:
            t.join()
        for s in (tcp, abstract, unix):
            s.close()
        shutil.rmtree(path.parent)
    assert out.count("refused") == 4 and "ESCAPED" not in out, out
    assert accepted == []


# ------------------------------------------------------------------ going around the audit hook


def test_the_audit_hook_can_be_bypassed_and_the_os_layer_still_holds(tmp_path: Path):
    """The issue's two hook bypasses (ctypes loaded by file location; the hook's closure cells
    rewritten through gc), with the hook ON: both still work, and nothing escapes."""
    marker = tmp_path / "made-by-system"
    code = (
        "import gc, glob, importlib.util, os, sys\n"
        "for f in gc.get_objects():\n"
        "    if type(f).__name__ == 'function' and f.__name__ == 'hook' and f.__closure__:\n"
        "        for cell in f.__closure__:\n"
        "            v = cell.cell_contents\n"
        "            if isinstance(v, frozenset):\n"
        "                cell.cell_contents = frozenset()\n"
        "            elif callable(v) and getattr(v, '__name__', '') == 'get':\n"
        "                cell.cell_contents = {}.get\n"
        "try:\n"
        "    os.system('true')\n"
        "    print('hook bypassed')\n"
        "except PermissionError:\n"
        "    print('hook held')\n"
        "path = glob.glob(sys.base_prefix + '/lib/python3*/lib-dynload/_ctypes*.so')[0]\n"
        "spec = importlib.util.spec_from_file_location('_ctypes', path)\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "sys.modules['_ctypes'] = mod\n"
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('ctypes loaded')\n"
        f"rc = os.system('touch {marker}')\n"
        f"fd = libc.open({str(marker).encode()!r}, 0o101, 0o644)\n"
        "print('system', rc, 'open', fd, 'mount', libc.mount(b'none', b'/', None, 32, None),\n"
        "      'unshare', libc.unshare(0x10000000), 'setuid', libc.setuid(0))\n"
    )
    r = run_python(code, SandboxLimits(timeout_s=3.0))
    out = r.stdout + r.stderr
    assert "hook bypassed" in out and "ctypes loaded" in out, out
    assert "open -1 mount -1 unshare -1" in out
    assert not marker.exists()


# ------------------------------------------------------------------ faked passes


HIDDEN = [
    "assert add(1, 2) == 987654321",
    "assert add(5, 5) == 123456789",
    "assert add(0, 0) == 555555555",
]
WRONG = "def add(a, b):\n    return a - b\n"

FAKES = {
    "builtins.exec is a no-op": "import builtins\nbuiltins.exec = lambda *a, **k: None\n",
    "builtins.compile is replaced": (
        "import builtins\n_c = builtins.compile\n"
        "builtins.compile = lambda *a, **k: _c('True', 'x', 'eval')\n"
    ),
    "builtins.eval answers True": "import builtins\nbuiltins.eval = lambda *a, **k: True\n",
    "an always-equal int": (
        "class Eq(int):\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = int.__hash__\n"
        "def add(a, b):\n    return Eq(0)\n"
    ),
    "an always-equal object": (
        "class Eq:\n    def __eq__(self, other):\n        return True\n"
        "    def __bool__(self):\n        return True\n"
        "def add(a, b):\n    return Eq()\n"
    ),
    "a str subclass claiming to be JSON": (
        "class S(str):\n    def __eq__(self, o):\n        return True\n"
        "def add(a, b):\n    return S('987654321')\n"
    ),
    "the expected values read from frames and memory": (
        "import gc, os, re, sys\n"
        "def add(a, b):\n"
        "    seen = []\n"
        "    f = sys._getframe()\n"
        "    while f:\n"
        "        seen += [repr(v) for v in list(f.f_locals.values()) + list(f.f_globals.values())]\n"
        "        f = f.f_back\n"
        "    seen += [repr(o) for o in gc.get_objects() if isinstance(o, (str, int, list, dict))]\n"
        "    for path in ('/proc/self/cmdline', '/proc/self/environ', '/proc/1/cmdline',\n"
        "                 '/proc/1/environ', '/proc/self/mem'):\n"
        "        try:\n"
        "            seen.append(open(path, 'rb').read(1 << 20).decode('latin-1'))\n"
        "        except OSError:\n"
        "            pass\n"
        "    for fd in range(3, 64):\n"
        "        try:\n"
        "            os.lseek(fd, 0, 0)\n"
        "            seen.append(os.read(fd, 1 << 20).decode('latin-1'))\n"
        "        except OSError:\n"
        "            pass\n"
        "    found = re.findall(r'== *([0-9]+)', ' '.join(seen))\n"
        "    return int(found[0]) if found else -1\n"
    ),
    "fake verdict and result lines on every stream": (
        "import os\n"
        "lines = ''.join(f'{i} 1\\nok {i}\\n[{i}, [[1, true]]]\\n' for i in range(3))\n"
        "for fd in (1, 2, 3):\n"
        "    try:\n"
        "        os.write(fd, lines.encode())\n"
        "    except OSError:\n"
        "        pass\n"
    ),
    "forged result records, then exit": (
        "import json, os\n"
        "for i in range(3):\n"
        "    os.write(3, (json.dumps([i, [[1, {'t': 'eq', 'v': 1}]]]) + '\\n').encode())\n"
        "os._exit(0)\n"
    ),
    "the harness's calls rewritten": (
        "import sys\n"
        "g = sys._getframe(1).f_globals\n"
        "g['_calls'] = [['True'] for _ in g.get('_calls', [])]\n"
        "g['_enc'] = lambda x, depth=0: True\n"
    ),
    "json patched in the harness": (
        "import json\njson.dumps = lambda *a, **k: '[0, [[1, true]]]'\n"
    ),
    "SystemExit(0) at load": "raise SystemExit(0)\n",
}


@pytest.mark.parametrize("trick", sorted(FAKES))
def test_faked_passes_score_zero(trick: str):
    solution = WRONG + FAKES[trick] if "def add" not in FAKES[trick] else FAKES[trick]
    report = run_tests(solution, HIDDEN)
    assert report.passed == 0, (trick, report, report.sandbox)


def test_honest_solutions_are_judged_as_before():
    assert run_tests(WRONG, ["assert add(2, 1) == 1", "assert add(1, 1) == 2"]).results == [
        True,
        False,
    ]
    right = "def add(a, b):\n    return a + b\n\ndef same(x):\n    return x\n"
    tests = [
        "assert add(1, 2) == 3",
        "assert add(1.5, 1) == 2.5",
        "assert add((1,), (2,)) == (1, 2)",
        "assert add([1], [2]) == [1, 2]",
        "assert same({1: (2, 'a'), 'k': [None]}) == {1: (2, 'a'), 'k': [None]}",
        "assert same({1, 2}) == {2, 1} and same(frozenset()) == frozenset()",
        "assert isinstance(add(1, 1), int) and type(same(True)) is bool",
        "assert abs(add(0.1, 0.2) - 0.3) < 1e-9",
        "assert math.isclose(add(0.1, 0.2), 0.3)",
        "assert add('a', 'b').upper() == 'AB'",
        "assert add(b'a', b'b') == b'ab'",
        "assert add(1j, 1) == 1 + 1j",
        "assert sorted(add([3], [1])) == [1, 3]",
        "assert not add(0, 0)",
        "assert add(2, 2) != 5",
        "assert same(float('inf')) > 10**308 and same(2**100) == 2**100",
        "assert same(-(3**20000)) == -(3**20000)",
    ]
    assert run_tests(right, tests).results == [True] * len(tests)
    # what cannot cross stays a failure, as does a call that raises
    objects = (
        "class P:\n    pass\n\ndef make():\n    return P()\n\ndef boom():\n    raise ValueError\n"
    )
    assert run_tests(objects, ["assert make() is not None", "assert boom() or True"]).results == [
        False,
        False,
    ]


# ------------------------------------------------------------------ kept contained (the list)


def test_the_contained_list_stays_contained(tmp_path: Path):
    limits = SandboxLimits(timeout_s=2.0, cpu_seconds=2, memory_mb=256)
    programs = {
        "pty.spawn": "import pty\npty.spawn(['sh', '-c', 'echo ESCAPED'])",
        "multiprocessing": "import multiprocessing as m\np = m.Process(target=print, args=('ESCAPED',))\np.start()\np.join()",
        "os.fork": "import os\nif os.fork() == 0:\n    print('ESCAPED')",
        "posix.kill": f"import posix, signal\nposix.kill({os.getpid()}, signal.SIGKILL)",
        "unix socket": f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({str(tmp_path / 's')!r})",
        "ignored signals": "import signal\nfor s in (signal.SIGXCPU, signal.SIGTERM):\n    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass",
        "50 threads": "import threading\nfor _ in range(50):\n    threading.Thread(target=lambda: [0 for _ in iter(int, 1)]).start()",
        "100 MB of output": "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 1_000_000)",
        "deep recursion": "import sys\nsys.setrecursionlimit(10**6)\nf = lambda n: f(n + 1)\nf(0)",
    }
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(programs, pool.map(lambda c: run_python(c, limits), programs.values())))
    assert time.monotonic() - start < 30
    for name, r in results.items():
        assert "ESCAPED" not in r.stdout, name
        assert not r.ok, name
    assert results["ignored signals"].timed_out or results["ignored signals"].killed_by_signal
    assert len(results["100 MB of output"].stdout) <= limits.max_output_bytes
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ the weaker fallback, and refusal


PY = SandboxLimits(timeout_s=3.0, cpu_seconds=3, isolation="python")


def test_python_isolation_still_hides_the_environment_and_the_verdict(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    r = run_python("import os\nprint(dict(os.environ))", PY)
    assert SECRET not in r.stdout and r.isolation == "python"
    for trick in (
        "builtins.exec is a no-op",
        "an always-equal int",
        "forged result records, then exit",
    ):
        solution = WRONG + FAKES[trick] if "def add" not in FAKES[trick] else FAKES[trick]
        assert run_tests(solution, HIDDEN, PY).passed == 0, trick


def test_python_isolation_does_not_hide_the_file_system(tmp_path: Path):
    """Its documented limit (docs/sandbox.md): what the trainer's user can read, the program
    can read; only the audit hook and the limits stand in the way of the rest."""
    readable = tmp_path / "readable.txt"
    readable.write_text("visible")
    r = run_python(f"print(open({str(readable)!r}).read())", PY)
    assert r.stdout.strip() == "visible"
    bare = SandboxLimits(**{**PY.__dict__, "audit_hook": False})
    r = run_python(f"open({str(tmp_path / 'written')!r}, 'w').write('x')", bare)
    assert r.ok and (tmp_path / "written").exists()


LEAK_FROM_SUPERVISOR = (
    "import os, re\n"
    "def add(a, b):\n"
    "    d, seen = f'/proc/{os.getppid()}/fd', ''\n"
    "    try:\n"
    "        fds = os.listdir(d)\n"
    "    except OSError:\n"
    "        return -1\n"
    "    for fd in fds:\n"
    "        if not os.readlink(f'{d}/{fd}').startswith(('pipe:', 'socket:', 'anon_inode:')):\n"
    "            try:\n"
    "                seen += open(f'{d}/{fd}', 'rb').read().decode('latin-1')\n"
    "            except OSError:\n"
    "                pass\n"
    "    found = re.findall(r'== *([0-9]+)', seen)\n"
    "    return int(found[0]) if found else -1\n"
)


def test_python_isolation_hides_the_judges_data_only_from_a_non_root_program():
    """Documented limit: under python isolation the supervisor is the same user as the program
    (made non-dumpable, which stops a non-root program, not a root one)."""
    bare = SandboxLimits(**{**PY.__dict__, "audit_hook": False})
    leaked = run_tests(LEAK_FROM_SUPERVISOR, HIDDEN, bare).passed
    assert leaked == (1 if os.geteuid() == 0 else 0)
    assert run_tests(LEAK_FROM_SUPERVISOR, HIDDEN, BARE).passed == 0  # OS isolation: never


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs util-linux unshare")
def test_without_namespaces_code_is_refused_unless_python_isolation_is_chosen():
    """A user namespace where no further namespace may be made stands in for a kernel that
    refuses them: OS isolation is refused with one line, python isolation still runs."""
    probe = (
        "from lsp_mlx.verifiers.sandbox import SandboxLimits, SandboxUnavailable, check_isolation, run_python\n"
        "try:\n"
        "    check_isolation('os')\n"
        "    print('os ran')\n"
        "except SandboxUnavailable as e:\n"
        "    print('refused:', e)\n"
        "print('python:', run_python('print(6 * 7)', SandboxLimits(isolation='python')).stdout.strip())\n"
    )
    script = 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" -c "$1"'
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c", script, sys.executable, probe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    refused = [line for line in proc.stdout.splitlines() if line.startswith("refused:")]
    assert len(refused) == 1 and "sqlm.sandbox_isolation: python" in refused[0]
    assert "python: 42" in proc.stdout
    assert proc.stderr.count("lsp-mlx: warning: no OS-level sandbox") == 1


def test_unknown_isolation_is_an_error():
    with pytest.raises(ValueError, match="isolation"):
        run_python("pass", SandboxLimits(isolation="none"))
    with pytest.raises(UserError, match="sandbox_isolation"):
        check_isolation("none")
    check_isolation("os")  # available here (the module is skipped otherwise)
    assert issubclass(SandboxUnavailable, UserError)


# ------------------------------------------------------------------ as an ordinary user


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("unshare"),
    reason="re-runs this file as nobody; needs root, setpriv and unshare",
)
def test_this_file_passes_as_an_ordinary_user():
    """The same escapes, started by an unprivileged trainer (nobody). A private mount namespace
    exposes the Python install if it lives under a folder nobody cannot enter (/root)."""
    expose = []
    for prefix in {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}:
        parts = Path(prefix).parts
        for i in range(2, len(parts)):
            blocked = Path(*parts[:i])
            if not os.stat(blocked).st_mode & 0o001:
                expose.append((str(blocked), parts[i]))
                break
    script = ["set -e"]
    for blocked, child in sorted(set(expose)):
        script += [
            "side=$(mktemp -d)",
            f'mount --bind "{blocked}" "$side"',
            f'mount -t tmpfs -o mode=0755 tmpfs "{blocked}"',
            f'mkdir -p "{blocked}/{child}"',
            f'mount --bind "$side/{child}" "{blocked}/{child}"',
        ]
    uid, gid = sandbox_user()  # nobody and its group, by number
    script.append(
        f"exec setpriv --reuid={uid} --regid={gid} --clear-groups env -i PATH=/usr/bin:/bin "
        'HOME=/tmp "$@"'
    )
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "sh",
            "-c",
            "\n".join(script),
            "sh",
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            __file__,
            "-k",
            # all but this test and the two that do not depend on who starts the sandbox
            "not ordinary_user and not contained_list and not honest_solutions",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1]
