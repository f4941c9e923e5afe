"""The sandbox against hostile programs: real subprocesses, real sockets, real files.

Each test runs a program that tries to hang, exhaust or escape, and checks both that the
call returns promptly with the failure recorded and that nothing outside the sandbox changed.
The tests marked ``both`` run under OS isolation and under the weaker python isolation;
tests/test_sandbox_escapes.py has the attacks that only the OS layer stops.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from lsp_mlx.verifiers.sandbox import SandboxLimits, isolation_problem, run_many, run_python

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or isolation_problem() is not None,
    reason=f"the sandbox needs POSIX and OS-level isolation: {isolation_problem()}",
)
both = pytest.mark.parametrize("isolation", ["os", "python"])

# RLIMIT_AS is not enforced on macOS, where large allocations are lazily committed
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="address-space limits are Linux-only"
)

FAST = SandboxLimits(timeout_s=2.0, cpu_seconds=2)


@both
def test_runs_a_normal_program_in_a_fresh_temp_dir(isolation: str):
    r = run_python(
        "import os\nprint(os.getcwd())\nopen('out.txt', 'w').write('ok')\nprint(open('out.txt').read())",
        SandboxLimits(isolation=isolation),
    )
    assert r.ok, r.stderr
    assert r.isolation == isolation
    cwd, content = r.stdout.split()
    assert content == "ok"
    assert os.path.basename(cwd).startswith("lsp-sandbox-")
    assert not os.path.exists(cwd), "the temp dir must be removed afterwards"
    r2 = run_python("import os\nprint(os.getcwd())")
    assert r2.stdout.strip() != cwd, "every run gets a fresh folder"


@both
def test_infinite_loop_is_killed_at_the_wall_clock_timeout(isolation: str):
    t = time.monotonic()
    r = run_python(
        "while True:\n    pass", SandboxLimits(timeout_s=1.0, cpu_seconds=30, isolation=isolation)
    )
    assert time.monotonic() - t < 5
    assert r.timed_out and r.returncode is None and not r.ok


def test_sleeping_program_is_killed_with_its_whole_process_group():
    t = time.monotonic()
    r = run_python("import time\ntime.sleep(60)", SandboxLimits(timeout_s=1.0))
    assert r.timed_out and time.monotonic() - t < 5


def test_cpu_limit_kills_a_busy_loop_even_with_a_long_wall_timeout():
    r = run_python("while True:\n    pass", SandboxLimits(timeout_s=30.0, cpu_seconds=1))
    assert not r.timed_out, "RLIMIT_CPU must end it before the wall clock"
    assert r.killed_by_signal in ("SIGXCPU", "SIGKILL")


@both
def test_fork_bomb_creates_no_process(isolation: str):
    code = (
        "import os\n"
        "made = 0\n"
        "for _ in range(50):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except Exception as e:\n"
        "        err = type(e).__name__\n"
        "        continue\n"
        "    if pid == 0:\n"
        "        while True:\n"
        "            pass\n"
        "    made += 1\n"
        "print(made, err)\n"
    )
    t = time.monotonic()
    r = run_python(code, SandboxLimits(timeout_s=2.0, cpu_seconds=2, isolation=isolation))
    assert time.monotonic() - t < 10
    assert r.ok, r.stderr
    made, err = r.stdout.split()
    assert made == "0" and err in ("PermissionError", "BlockingIOError")


@pytest.mark.parametrize(
    "code",
    [
        "import subprocess\nsubprocess.run(['sh', '-c', 'echo escaped'])",
        "import os\nos.system('echo escaped')",
        "import os\nos.execv('/bin/sh', ['sh', '-c', 'echo escaped'])",
        "import os\nos.posix_spawn('/bin/sh', ['sh', '-c', 'echo escaped'], {})",
        "import ctypes\nctypes.CDLL(None).system(b'echo escaped')",
    ],
)
def test_no_other_program_can_be_started(code: str):
    r = run_python(code, FAST)
    assert not r.ok
    assert "escaped" not in r.stdout
    assert "PermissionError" in r.stderr


def test_signals_to_other_processes_are_refused():
    r = run_python(f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)", FAST)
    assert "PermissionError" in r.stderr  # and we are still alive to check it


@linux_only
def test_huge_allocation_fails_inside_the_program():
    r = run_python("x = bytearray(8 * 1024**3)", SandboxLimits(timeout_s=10, memory_mb=256))
    assert not r.ok and not r.timed_out
    assert "MemoryError" in r.stderr


@linux_only
def test_growing_allocation_stops_at_the_memory_limit():
    code = "x = []\nwhile True:\n    x.append(bytearray(50 * 1024**2))"
    r = run_python(code, SandboxLimits(timeout_s=20, memory_mb=256))
    assert not r.ok and not r.timed_out
    assert "MemoryError" in r.stderr


def test_network_call_fails_and_reaches_nothing():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def accept() -> None:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                conn, _ = server.accept()
                accepted.append(conn)
                return
            except OSError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
        r = run_python(code, FAST)
    finally:
        thread.join()
        server.close()
    assert "connected" not in r.stdout and not r.ok
    assert not accepted, "the sandboxed program reached a socket on this machine"


def test_dns_and_raw_sockets_are_refused():
    for code in (
        "import socket\nsocket.getaddrinfo('example.com', 80)",
        "import socket\nsocket.socket()",
    ):
        r = run_python(code, FAST)
        assert not r.ok and "PermissionError" in r.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="network namespaces are Linux's")
def test_network_namespace_is_empty():
    # /proc/net/dev lists the interfaces of the reader's own network namespace
    code = "print(sorted(line.split(':')[0].strip() for line in open('/proc/net/dev').readlines()[2:]))"
    r = run_python(code, FAST)
    assert r.ok, r.stderr
    assert r.network == "namespace"
    assert r.stdout.strip() == "['lo']"


@both
def test_writes_outside_the_temp_dir_are_refused(tmp_path: Path, isolation: str):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    target = tmp_path / "new.txt"
    attempts = [
        f"open({str(target)!r}, 'w').write('x')",
        f"open({str(victim)!r}, 'a').write('x')",
        f"import os\nos.close(os.open({str(target)!r}, os.O_CREAT | os.O_WRONLY))",
        f"import os\nos.remove({str(victim)!r})",
        f"import os\nos.rename({str(victim)!r}, 'stolen.txt')",
        f"import os\nos.mkdir({str(tmp_path / 'dir')!r})",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        f"import os\nos.symlink({str(victim)!r}, 'link')\nopen('link', 'w').write('x')",
        f"import pathlib\npathlib.Path({str(target)!r}).write_text('x')",
        f"import os\nos.chmod({str(victim)!r}, 0o777)",
    ]
    for code in attempts:
        r = run_python(code, SandboxLimits(timeout_s=2.0, cpu_seconds=2, isolation=isolation))
        assert not r.ok, code
        assert "PermissionError" in r.stderr, (code, r.stderr)
    assert victim.read_text() == "original"
    assert not target.exists() and not (tmp_path / "dir").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim.txt"]


def test_endless_output_is_capped():
    limits = SandboxLimits(timeout_s=10, max_output_bytes=1000, max_file_bytes=100_000)
    r = run_python("while True:\n    print('x' * 1000)", limits)
    assert not r.timed_out, "the file size limit must stop it"
    assert r.output_truncated and len(r.stdout) <= 1000


def test_many_hostile_programs_at_once_all_return():
    programs = [
        "while True:\n    pass",
        "print('fine')",
        "import os\nos.fork()",
        "import socket\nsocket.socket().connect(('127.0.0.1', 9))",
    ]
    t = time.monotonic()
    results = run_many(
        programs, SandboxLimits(timeout_s=1.5, cpu_seconds=5, memory_mb=256), workers=4
    )
    assert time.monotonic() - t < 10
    assert [r.ok for r in results] == [False, True, False, False]
    assert results[0].timed_out and results[1].stdout == "fine\n"


def test_bad_extra_file_name_is_rejected():
    with pytest.raises(ValueError, match="plain file name"):
        run_python("pass", files={"../escape.py": "x"})


@both
def test_stdin_argv_and_exit_status_reach_the_caller(isolation: str):
    limits = SandboxLimits(isolation=isolation, audit_hook=False)
    r = run_python("import sys\nprint(input(), sys.argv[1:])", limits, stdin="hi\n", argv=["a"])
    assert r.stdout == "hi ['a']\n"
    assert run_python("raise SystemExit(3)", limits).returncode == 3
    crash = run_python("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", limits)
    assert crash.killed_by_signal == "SIGSEGV"
