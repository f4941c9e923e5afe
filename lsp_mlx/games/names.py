"""The games' names: a leaf module that the config (validation) and `make_game` both read.

`GAMES` maps a config's ``game.name`` to ``module:factory`` where
``factory(config, backend, world) -> SelfPlayGame``; `DATA_PARALLEL` names the games that run
on several ranks (`lsp_mlx.distributed`).
"""

from __future__ import annotations

GAMES: dict[str, str] = {
    "lsp": "lsp_mlx.games.lsp:make_lsp",
    "lsp-zero": "lsp_mlx.games.lsp:make_lsp",
    "sqlm": "lsp_mlx.games.sqlm:make_sqlm",
    "spin": "lsp_mlx.games.spin:make_spin",
}
DATA_PARALLEL = frozenset({"lsp", "lsp-zero"})
