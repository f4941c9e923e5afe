"""Small text helpers for the dashboard: numbers, durations and one-line clips of model text."""

from __future__ import annotations

import math
import re

_SPACE = re.compile(r"\s+")
# C0 controls (but tab and newline), DEL and C1 controls: a random model writes them, and
# sent raw they move the terminal's cursor or switch its modes.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters shown as their Unicode pictures (U+2400...) instead."""
    return _CONTROL.sub(_picture, text)


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)
    return "\u2421" if code == 0x7F else "\ufffd"


def one_line(text: str) -> str:
    """Collapse newlines and runs of spaces, so a model answer fits one table cell."""
    return printable(_SPACE.sub(" ", text).strip())


def clip(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis when longer."""
    text = one_line(text)
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"


def duration(seconds: float | None) -> str:
    """``H:MM:SS`` (or ``Dd H:MM:SS``); an em dash when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text


def number(value: float | None, digits: int = 3) -> str:
    """A compact number: fixed point for ordinary sizes, exponent for tiny or huge ones."""
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 10 ** -(digits - 1) or magnitude >= 1e6):
        return f"{value:.{max(digits - 1, 1)}e}"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 2) -> str:
    """A number with an explicit sign, for advantages."""
    if value is None:
        return "—"
    return f"{value:+.{digits}f}"
