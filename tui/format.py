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


def significant(value: float | None, digits: int = 4) -> str:
    """``value`` with at most ``digits`` significant digits (``0.5549``, ``1235``, ``2.1e-05``)."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude < 1e-3 or magnitude >= 10**digits:
        return f"{value:.{max(digits - 2, 0)}e}"
    return f"{value:.{digits}g}"


def nice_step(span: float, count: int) -> float:
    """A step of 1, 2, 2.5 or 5 times a power of ten giving about ``count`` intervals."""
    if not math.isfinite(span) or span <= 0:
        return 1.0
    raw = span / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    return next((m * power for m in (1, 2, 2.5, 5) if m * power >= raw), 10 * power)


def nice_range(lo: float, hi: float, count: int = 4) -> tuple[float, float, list[float]]:
    """Limits widened to whole steps and the ticks between them (about ``count`` intervals)."""
    if hi < lo:
        lo, hi = hi, lo
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    step = nice_step(hi - lo, count)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    ticks = [round(k * step, 12) for k in range(first, last + 1)]
    return ticks[0], ticks[-1], ticks


def iteration_ticks(first: int, last: int, count: int = 5) -> list[int]:
    """Whole-number iteration ticks: ``first``, round multiples of a 1-2-5 step, ``last``.

    A multiple closer than half a step to either end is left out so labels never crowd.
    """
    if last <= first:
        return [first]
    raw = (last - first) / max(count - 1, 1)
    power = 10 ** max(math.floor(math.log10(raw)), 0) if raw >= 1 else 1
    step = next((m * power for m in (1, 2, 5, 10) if m * power >= raw), 10 * power)
    inner = range((first // step + 1) * step, last, step)
    ticks = [first, *(t for t in inner if t - first >= step / 2 and last - t >= step / 2), last]
    return ticks
