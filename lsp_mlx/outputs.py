"""Checks on where a command will write, made before any work so a bad path costs nothing.

The check is real: a probe file is created in the folder that will hold the output and
removed at once (``os.access`` says yes to root on a read-only mount or a chmod-ed folder).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lsp_mlx.errors import UserError


def _nearest_existing(path: Path) -> Path:
    for folder in (path, *path.parents):
        if folder.exists():
            return folder
    return Path(".")


def check_writable_file(path: str | Path, flag: str) -> Path:
    """``path`` can be written as a file: not a folder, and its nearest existing folder is writable."""
    if not str(path).strip():
        raise UserError(f"{flag} is empty: pass a file path")
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder: pass a file path, e.g. {path / 'result.json'}")
    if path.exists() and not path.is_file():
        raise UserError(f"{flag} {path} is not a regular file: pass a file path")
    _probe(_nearest_existing(path.parent), flag, path)
    return path


def check_writable_dir(path: str | Path, flag: str) -> Path:
    """A folder can be created at (or next to) ``path``: its nearest existing ancestor is writable."""
    if not str(path).strip():
        raise UserError(f"{flag} is empty: pass a folder path")
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file: pass a folder path")
    _probe(_nearest_existing(path.parent), flag, path)
    return path


def _probe(folder: Path, flag: str, target: Path) -> None:
    if not folder.is_dir():
        raise UserError(f"{flag} {target}: {folder} is a file, not a folder: pass another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".lsp-mlx-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UserError(
            f"{flag} {target} cannot be written ({folder}: {reason}): pass a writable path"
        ) from None
