"""The games. ``make_game(config, backend, world)`` builds the one a config names.

Each game lives in its own module and is imported only when used (`lsp_mlx.games.names`
lists them). ``world`` is the data-parallel `lsp_mlx.distributed.World` of this process; a
game that does not run on several ranks refuses a world of more than one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from lsp_mlx.errors import UserError
from lsp_mlx.games.names import DATA_PARALLEL, GAMES

if TYPE_CHECKING:
    from lsp_mlx.backends.base import Backend
    from lsp_mlx.config import Config
    from lsp_mlx.distributed import World
    from lsp_mlx.games.base import SelfPlayGame

__all__ = ["DATA_PARALLEL", "GAMES", "check_data_parallel", "make_game"]


def check_data_parallel(name: str, ranks: int, num_queries: int) -> None:
    """Refuse a data-parallel run the game cannot play, before any rank starts."""
    if ranks == 1:
        return
    if name not in DATA_PARALLEL:
        raise UserError(
            f"game {name} does not run data-parallel: run it as one process (lsp-mlx train), "
            f"or use game {' / '.join(sorted(DATA_PARALLEL))}"
        )
    if num_queries < ranks:
        raise UserError(
            f"game.num_queries is {num_queries} but there are {ranks} ranks: "
            f"set game.num_queries to at least {ranks} so every rank gets a query"
        )


def make_game(config: Config, backend: Backend, world: World) -> SelfPlayGame:
    check_data_parallel(config.game.name, world.size, config.game.num_queries)
    module, _, factory = GAMES[config.game.name].partition(":")
    return getattr(importlib.import_module(module), factory)(config, backend, world)
