"""The games. ``make_game(config, backend)`` builds the one a config names.

Each game lives in its own module and is imported only when used; `GAMES` maps a config's
``game.name`` to ``module:factory`` where ``factory(config, backend) -> SelfPlayGame``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend
    from lsp_mlx.config import Config
    from lsp_mlx.games.base import SelfPlayGame

GAMES: dict[str, str] = {
    "lsp": "lsp_mlx.games.lsp:make_lsp",
    "lsp-zero": "lsp_mlx.games.lsp:make_lsp",
    "sqlm": "lsp_mlx.games.sqlm:make_sqlm",
    "spin": "lsp_mlx.games.spin:make_spin",
}


def make_game(config: Config, backend: Backend) -> SelfPlayGame:
    module, _, factory = GAMES[config.game.name].partition(":")
    return getattr(importlib.import_module(module), factory)(config, backend)
