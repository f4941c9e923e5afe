"""lsp_mlx.readers: real files, damaged the way crashes and editors damage them, each -> one line."""

from __future__ import annotations

import json
import struct

import mlx.core as mx
import numpy as np
import pytest

from lsp_mlx.errors import UserError
from lsp_mlx.readers import (
    check_safetensors,
    read_json,
    read_jsonl,
    read_text,
    read_yaml,
)


def one_line_error(excinfo: pytest.ExceptionInfo[UserError], *words: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def test_read_text_utf8_bom_and_errors(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes("\ufeffhé\n".encode())
    assert read_text(path, "the prompts file") == "hé\n"
    path.write_bytes(b"ok\n\xff\xfe bad")
    with pytest.raises(UserError) as e:
        read_text(path, "the prompts file")
    one_line_error(e, "the prompts file", "p.txt", "not UTF-8", "0xff", "save it as UTF-8")
    with pytest.raises(UserError) as e:
        read_text(tmp_path / "missing.txt", "the prompts file")
    one_line_error(e, "missing.txt", "not found")
    with pytest.raises(UserError) as e:
        read_text(tmp_path, "the prompts file", fix="pass a file, not a folder")
    one_line_error(e, "is a folder", "pass a file, not a folder")


def test_read_json(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"iteration": 3}')
    assert read_json(path, "the checkpoint state") == {"iteration": 3}
    for damage in ("", "   \n", '{"iteration": ', "\x00\x00\x00"):
        path.write_text(damage)
        with pytest.raises(UserError) as e:
            read_json(path, "the checkpoint state", fix="resume from an earlier checkpoint")
        one_line_error(e, "the checkpoint state", "state.json", "resume from an earlier checkpoint")
    path.write_text('{\n "a": 1,\n oops\n}')
    with pytest.raises(UserError) as e:
        read_json(path, "the checkpoint state")
    one_line_error(e, "not valid JSON (line 3)")


def test_read_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  seed: 3\n")
    assert read_yaml(path, "the config file") == {"train": {"seed": 3}}
    path.write_text("train:\n  seed: [1\n")
    with pytest.raises(UserError) as e:
        read_yaml(path, "the config file")
    one_line_error(e, "the config file", "not valid YAML", "line", "fix its syntax")
    path.write_bytes(b"train:\n  task: caf\xe9\n")  # Latin-1, as some editors save
    with pytest.raises(UserError) as e:
        read_yaml(path, "the config file")
    one_line_error(e, "not UTF-8", "0xe9")


def test_read_jsonl_skips_only_a_torn_tail(tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [json.dumps({"type": "iteration", "i": i}) for i in range(3)]
    path.write_text("\n".join(lines) + "\n\n")
    assert [r["i"] for r in read_jsonl(path, "the run's events")] == [0, 1, 2]
    # a crash mid-write leaves a partial last line with no newline: skipped
    path.write_text("\n".join(lines) + '\n{"type": "iter')
    assert len(read_jsonl(path, "the run's events")) == 3
    # ... even when the cut falls inside a multi-byte character
    path.write_bytes(("\n".join(lines) + '\n{"q": "é').encode()[:-1])
    assert len(read_jsonl(path, "the run's events")) == 3
    # a damaged line in the middle is an error naming the line
    path.write_text(lines[0] + "\n{garbage\n" + lines[1] + "\n")
    with pytest.raises(UserError) as e:
        read_jsonl(path, "the run's events")
    one_line_error(e, "the run's events", "events.jsonl", "line 2")
    # a complete last line that does not parse is damage too, not a torn write
    path.write_text(lines[0] + "\n{garbage\n")
    with pytest.raises(UserError):
        read_jsonl(path, "the run's events")
    path.write_bytes(lines[0].encode() + b"\n\xff\xfe\n")
    with pytest.raises(UserError) as e:
        read_jsonl(path, "the run's events")
    one_line_error(e, "not UTF-8", "line 2")
    path.write_text(lines[0] + "\n[1, 2]\n")
    with pytest.raises(UserError) as e:
        read_jsonl(path, "the run's events")
    one_line_error(e, "line 2 is not a JSON object")


@pytest.fixture
def safetensors_file(tmp_path):
    path = tmp_path / "adapters.safetensors"
    mx.save_safetensors(
        str(path),
        {"a.lora_a": mx.ones((4, 3)), "a.lora_b": mx.zeros((2,), dtype=mx.bfloat16)},
        metadata={"format": "mlx"},
    )
    return path


def test_check_safetensors_accepts_real_files(safetensors_file, tmp_path):
    check_safetensors(safetensors_file, "the adapter weights")
    empty = tmp_path / "empty.safetensors"
    mx.save_safetensors(str(empty), {})
    check_safetensors(empty, "the adapter weights")
    # and a file written by the safetensors library itself (the format's reference)
    from safetensors.numpy import save_file

    ref = tmp_path / "ref.safetensors"
    save_file({"x": np.arange(10, dtype=np.int64), "y": np.ones((2, 2), np.float16)}, str(ref))
    check_safetensors(ref, "the model weights")


@pytest.mark.parametrize("keep", [0, 5, 8, 20, -1])
def test_check_safetensors_rejects_truncation(safetensors_file, keep):
    data = safetensors_file.read_bytes()
    safetensors_file.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(UserError) as e:
        check_safetensors(
            safetensors_file, "the adapter weights", fix="resume from an earlier checkpoint"
        )
    one_line_error(
        e, "the adapter weights", "adapters.safetensors", "resume from an earlier checkpoint"
    )


def test_check_safetensors_rejects_garbage(tmp_path, safetensors_file):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"not a safetensors file at all, just text\n" * 3)
    with pytest.raises(UserError) as e:
        check_safetensors(path, "the model weights")
    one_line_error(e, "x.safetensors")
    # a header that parses but disagrees with its shapes
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 8)
    with pytest.raises(UserError) as e:
        check_safetensors(path, "the model weights")
    one_line_error(e, "does not match shape")
    # trailing bytes after the last tensor
    path.write_bytes(safetensors_file.read_bytes() + b"\x00" * 4)
    with pytest.raises(UserError) as e:
        check_safetensors(path, "the model weights")
    one_line_error(e, "after its last tensor")
    with pytest.raises(UserError) as e:
        check_safetensors(tmp_path / "none.safetensors", "the model weights")
    one_line_error(e, "not found")


def test_read_jsonl_reads_a_gzipped_log_and_names_a_damaged_one(tmp_path):
    import gzip

    path = tmp_path / "events.jsonl.gz"
    lines = [json.dumps({"type": "metrics", "i": i}) for i in range(3)]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert [r["i"] for r in read_jsonl(path, "the run's events")] == [0, 1, 2]
    path.write_bytes(path.read_bytes()[:-12])  # cut short: no end of stream
    with pytest.raises(UserError) as e:
        read_jsonl(path, "the run's events")
    one_line_error(e, "the run's events", "is a damaged gzip file")
