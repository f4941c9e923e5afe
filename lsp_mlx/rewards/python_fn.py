"""Reward source ``python``: a user function named by import path, ``package.module:function``.

The function has the project's reward signature
``fn(queries: list[str], answers: list[list[str]]) -> list[list[float]]``. It runs in the
trainer's process: it is the user's own code, trusted like the config that names it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from lsp_mlx.errors import UserError


def load_function(spec: str) -> Callable[[list[str], list[list[str]]], list[list[float]]]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"reward function {spec!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"cannot import reward module {module_name!r} ({e}): check reward.function and PYTHONPATH") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"{module_name!r} has no function {attr!r}: check reward.function")
    try:
        inspect.signature(fn).bind([], [])
    except TypeError:
        raise UserError(f"reward function {spec!r} must take (queries, answers)") from None
    except ValueError:
        pass  # builtins without a signature: trust them
    return fn
