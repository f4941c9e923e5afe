"""Every file the project reads goes through here: damage becomes one line naming the file and the fix.

Each reader takes ``what``, a phrase such as "the optimizer state", that starts the message
(``the optimizer state 'runs/x/optimizer.safetensors' is truncated: ...``). The fix at the end
of the line is the reader's default for that kind of damage unless the caller passes ``fix=``,
which then stands for every kind (the caller knows best what to do with its own file).

Nothing here imports mlx or torch: safetensors files are checked in pure Python (header and
sizes), so a damaged checkpoint is reported before a framework tries to load it.
"""

from __future__ import annotations

import gzip
import json
import math
import struct
import zlib
from pathlib import Path
from typing import Any

import yaml

from lsp_mlx.errors import UserError

_MISSING = "pass an existing file"
_DAMAGED = "restore it or re-create it"
_ENCODING = "save it as UTF-8"

# bytes per element of each safetensors dtype (the format's own names)
_DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}  # fmt: skip
# the safetensors library refuses headers above 100 MB; so do we, before allocating anything
_MAX_HEADER = 100_000_000


def _fail(what: str, path: Path, problem: str, fix: str | None, default_fix: str) -> UserError:
    return UserError(f"{what} {str(path)!r} {problem}: {fix or default_fix}")


def read_bytes(path: str | Path, what: str, *, fix: str | None = None) -> bytes:
    """The file's bytes; missing, a folder or unreadable: one line."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _fail(what, path, "not found", fix, _MISSING) from None
    except IsADirectoryError:
        raise _fail(what, path, "is a folder, not a file", fix, _MISSING) from None
    except PermissionError:
        raise _fail(
            what, path, "cannot be read (permission denied)", fix, "make it readable"
        ) from None
    except OSError as e:
        raise _fail(what, path, f"cannot be read ({e.strerror or e})", fix, _DAMAGED) from None


def _not_utf8(
    data: bytes,
    e: UnicodeDecodeError,
    what: str,
    path: Path,
    fix: str | None,
    line: int | None = None,
) -> UserError:
    where = f" on line {line}" if line is not None else ""
    return _fail(
        what, path, f"is not UTF-8 text (byte 0x{data[e.start]:02x}{where})", fix, _ENCODING
    )


def read_text(path: str | Path, what: str, *, fix: str | None = None) -> str:
    """The file as UTF-8 text (a leading byte-order mark is dropped)."""
    path = Path(path)
    data = read_bytes(path, what, fix=fix)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(data, e, what, path, fix) from None
    return text.removeprefix("\ufeff")


def read_json(path: str | Path, what: str, *, fix: str | None = None) -> Any:
    """One JSON document; empty or invalid: one line with the line number."""
    path = Path(path)
    text = read_text(path, what, fix=fix)
    if not text.strip():
        raise _fail(what, path, "is empty", fix, _DAMAGED)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(what, path, f"is not valid JSON (line {e.lineno})", fix, _DAMAGED) from None


def read_yaml(path: str | Path, what: str, *, fix: str | None = None) -> Any:
    """One YAML document (safe loader); invalid: one line with the line number."""
    path = Path(path)
    text = read_text(path, what, fix=fix)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise _fail(what, path, f"is not valid YAML{where}", fix, "fix its syntax") from None


def read_jsonl(path: str | Path, what: str, *, fix: str | None = None) -> list[dict[str, Any]]:
    """One JSON object per line (gzipped or not); blank lines are skipped.

    A last line without its newline that does not parse is a write torn by a crash: it is
    skipped (the writer appends whole lines, so everything before it is intact). Any other
    line that does not parse, or holds something other than an object, is damage: one line.
    """
    path = Path(path)
    data = read_bytes(path, what, fix=fix)
    if data.startswith(b"\x1f\x8b"):  # gzip's magic: a kept run log (docs/proof)
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise _fail(what, path, "is a damaged gzip file", fix, _DAMAGED) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.split(b"\n")
    torn_tail = not data.endswith(b"\n")
    records: list[dict[str, Any]] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        last = number == len(lines)
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            if last and torn_tail:
                break
            raise _not_utf8(raw, e, what, path, fix, line=number) from None
        except json.JSONDecodeError:
            if last and torn_tail:
                break
            raise _fail(
                what, path, f"has a damaged line {number} (not JSON)", fix, _DAMAGED
            ) from None
        if not isinstance(record, dict):
            raise _fail(what, path, f"line {number} is not a JSON object", fix, _DAMAGED)
        records.append(record)
    return records


def check_safetensors(path: str | Path, what: str, *, fix: str | None = None) -> None:
    """Check a .safetensors file's header and sizes without loading it.

    The format: an 8-byte little-endian header length, a JSON header mapping each tensor name
    to ``{dtype, shape, data_offsets: [begin, end]}`` (offsets into the data that follows),
    then the data. A file cut short, a garbage header or a tensor whose byte range disagrees
    with its shape is reported as one line.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _fail(what, path, "not found", fix, _MISSING) from None
    if path.is_dir():
        raise _fail(what, path, "is a folder, not a file", fix, _MISSING)
    if size < 8:
        raise _fail(what, path, f"is truncated ({size} bytes)", fix, _DAMAGED)
    try:
        with open(path, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            if header_len > _MAX_HEADER or 8 + header_len > size:
                raise _fail(
                    what,
                    path,
                    "is truncated or not a safetensors file (bad header length)",
                    fix,
                    _DAMAGED,
                )
            raw = fh.read(header_len)
    except PermissionError:
        raise _fail(
            what, path, "cannot be read (permission denied)", fix, "make it readable"
        ) from None
    except OSError as e:
        raise _fail(what, path, f"cannot be read ({e.strerror or e})", fix, _DAMAGED) from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict):
        raise _fail(what, path, "has a damaged header (not a safetensors file)", fix, _DAMAGED)
    data_len = size - 8 - header_len
    end_max = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        ok = (
            isinstance(info, dict)
            and info.get("dtype") in _DTYPE_SIZES
            and isinstance(info.get("shape"), list)
            and all(isinstance(d, int) and d >= 0 for d in info["shape"])
            and isinstance(info.get("data_offsets"), list)
            and len(info["data_offsets"]) == 2
            and all(isinstance(o, int) and o >= 0 for o in info["data_offsets"])
        )
        if not ok:
            raise _fail(what, path, f"has a damaged header entry for {name!r}", fix, _DAMAGED)
        begin, end = info["data_offsets"]
        expected = math.prod(info["shape"]) * _DTYPE_SIZES[info["dtype"]]
        if end - begin != expected:
            raise _fail(
                what,
                path,
                f"has a damaged header entry for {name!r} (size does not match shape)",
                fix,
                _DAMAGED,
            )
        end_max = max(end_max, end)
    if end_max > data_len:
        raise _fail(
            what,
            path,
            f"is truncated ({size} bytes, the header needs {8 + header_len + end_max})",
            fix,
            _DAMAGED,
        )
    if end_max < data_len:
        raise _fail(what, path, "has bytes after its last tensor (damaged)", fix, _DAMAGED)
