"""Reward source ``python``: a user function named by import path, ``package.module:function``.

The function has the project's reward signature
``fn(queries: list[str], answers: list[list[str]]) -> list[list[float]]``. It runs in the
trainer's process: it is the user's own code, trusted like the config that names it.
`load_function` runs when the config is validated, so a wrong name or signature is one line
before anything is written.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from lsp_mlx.errors import UserError

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def load_function(spec: str) -> Callable[[list[str], list[list[str]]], list[list[float]]]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"reward function {spec!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(
            f"cannot import reward module {module_name!r} ({e}): check reward.function and PYTHONPATH"
        ) from None
    except Exception as e:  # the user's module failed while importing: one line, not its traceback
        detail = " ".join(f"{type(e).__name__}: {e}".split())
        raise UserError(
            f"importing reward module {module_name!r} failed ({detail}): fix the module or reward.function"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"{module_name!r} has no function {attr!r}: check reward.function")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn  # builtins without a signature: trust them
    # (queries, answers) must land on two named parameters: f(a, *rest) binds them but means
    # something else (os.path:join), and would fail only mid-run.
    named = [p for p in signature.parameters.values() if p.kind in _POSITIONAL]
    try:
        signature.bind([], [])
    except TypeError:
        named = []
    if len(named) < 2:
        raise UserError(
            f"reward function {spec!r} has the signature {signature}: it must take (queries, answers) and return one list of floats per query"
        )
    return fn
