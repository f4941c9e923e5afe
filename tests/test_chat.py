"""`lsp-mlx chat` and `lsp-mlx generate`: real subprocesses with stdin as a pipe, checked against
the same model answering in-process (greedy decoding is deterministic, so the texts must be
equal), on an adapter run of the tiny model (test_export_support.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_export_support import make_adapter_run, make_readable_tiny_model

from lsp_mlx.commands.chat import side_by_side

MAX_TOKENS = "10"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chat")
    model = make_readable_tiny_model(root / "model")
    return make_adapter_run(root / "run", model, num_layers=-1, rank=4, scale=4.0)


@pytest.fixture(scope="module")
def session(run_dir: Path):  # noqa: ANN201 (AdapterSession imports mlx)
    from lsp_mlx.export.session import open_session

    return open_session(run_dir)


def _answer(session, history: list[dict[str, str]], adapter: bool = True) -> str:  # noqa: ANN001
    return session.complete(
        session.prompt_tokens(history), adapter=adapter, max_tokens=int(MAX_TOKENS)
    )


def _lsp(args: list[str], stdin: str) -> subprocess.CompletedProcess[str]:
    """`python -m lsp_mlx ARGS` with ``stdin`` piped in, on a 90-column 'terminal'."""
    result = subprocess.run(
        [sys.executable, "-m", "lsp_mlx", *args],
        input=stdin.encode("utf-8", "surrogateescape"),
        capture_output=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "90"},
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def _chat(run_dir: Path, stdin: str, *args: str) -> str:
    result = _lsp(["chat", "--adapter", str(run_dir), "--max-tokens", MAX_TOKENS, *args], stdin)
    assert result.returncode == 0, result.stderr
    assert "lsp-mlx chat: base" in result.stderr and "/quit" in result.stderr
    return result.stdout


def test_chat_compare_shows_base_and_adapted_side_by_side(run_dir: Path, session) -> None:  # noqa: ANN001
    out = _chat(run_dir, "hello\n/reset\nname a color\n/quit\nnever read\n", "--compare")
    first_base = _answer(session, [{"role": "user", "content": "hello"}], adapter=False)
    first_adapted = _answer(session, [{"role": "user", "content": "hello"}])
    assert first_base != first_adapted  # the adapter changes the greedy answer
    second = [{"role": "user", "content": "name a color"}]  # /reset: no history from "hello"
    expected = "\n".join(
        [
            side_by_side("base", first_base, "adapted", first_adapted, 90),
            "",
            "(conversation cleared)",
            side_by_side(
                "base", _answer(session, second, False), "adapted", _answer(session, second), 90
            ),
            "",
        ]
    )
    assert out == expected + "\n"


def test_chat_keeps_the_conversation(run_dir: Path, session) -> None:  # noqa: ANN001
    # ends at end of input; blank lines are skipped, and so is a line that is not UTF-8
    # (written here as the lone surrogate Python decodes such bytes to)
    out = _chat(run_dir, "hello\n\ncaf\udce9\nand then?\n")
    skipped = "(that line is not UTF-8 text (at character 3): pass UTF-8 text)\n"
    assert out.count(skipped) == 1
    out = out.replace(skipped, "")
    history = [{"role": "user", "content": "hello"}]
    first = _answer(session, history)
    history += [{"role": "assistant", "content": first}, {"role": "user", "content": "and then?"}]
    second = _answer(session, history)
    assert out == f"model> {first}\nmodel> {second}\n"


def test_generate_prints_one_completion(run_dir: Path, session) -> None:  # noqa: ANN001
    """The prompt from stdin, a system message, the base model (--no-adapter). The adapted
    path of `generate` is compared with mlx-lm's own CLI in test_export.py."""
    args = ["generate", "--adapter", str(run_dir), "--prompt", "-", "--max-tokens", MAX_TOKENS]
    empty = _lsp(args, "  \n")
    assert empty.returncode == 2 and "the prompt is empty" in empty.stderr
    done = _lsp([*args, "--system", "Be brief.", "--no-adapter"], "What is 2 + 2?")
    assert done.returncode == 0, done.stderr
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 2?"},
    ]
    assert done.stdout == _answer(session, messages, adapter=False) + "\n"
    assert done.stdout != _answer(session, messages) + "\n"


def test_adapter_off_restores_the_scales_and_sampling_is_seeded(session) -> None:  # noqa: ANN001
    scales = [m.scale for _, m in session.model.named_modules() if hasattr(m, "lora_a")]
    prompt = session.prompt_tokens([{"role": "user", "content": "hi"}])
    with pytest.raises(RuntimeError), session.adapter(False):
        assert all(m.scale == 0.0 for _, m in session.model.named_modules() if hasattr(m, "lora_a"))
        raise RuntimeError("an error inside the block")
    assert (
        [m.scale for _, m in session.model.named_modules() if hasattr(m, "lora_a")]
        == scales
        == [4.0] * len(scales)
    )
    sampled = [session.complete(prompt, temperature=1.0, seed=s, max_tokens=12) for s in (1, 1, 2)]
    assert sampled[0] == sampled[1] != sampled[2]


def test_side_by_side_wraps_and_pads() -> None:
    text = side_by_side(
        "base",
        "short",
        "adapted",
        "a much longer answer that has to wrap " * 3 + "\nsecond line",
        60,
    )
    lines = text.splitlines()
    assert lines[0].startswith("base") and lines[0].endswith("| adapted")
    assert all(len(line) <= 60 for line in lines)
    assert all(" | " in line or line.endswith(" |") for line in lines)
    assert lines[2].startswith("short") and lines[-1].endswith("second line")
    assert len(lines) > 5  # the long answer wrapped, the short column was padded
