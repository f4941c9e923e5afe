"""Writing files and folders so that a reader (or a crash) never sees them half-written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to a hidden sibling, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def swap_folder(tmp: Path, final: Path) -> None:
    """Move the finished folder ``tmp`` to ``final``; an old ``final`` goes only once the new one is in place."""
    if final.exists():
        trash = final.with_name(f".{final.name}.old")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
