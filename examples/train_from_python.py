"""Run self-play from Python instead of the CLI: the same Trainer `lsp-mlx train` uses.

python examples/train_from_python.py
"""

from lsp_mlx import config as cfg
from lsp_mlx.trainer import Trainer

config = cfg.load(
    "configs/demo.yaml",
    {"train.iterations": 2, "train.run_dir": "runs/from-python", "game.num_queries": 2},
)
Trainer(config).run()
# The run's games and metrics are plain JSON lines:
from lsp_mlx.events import read_events  # noqa: E402

for event in read_events("runs/from-python"):
    if event["type"] == "metrics":
        print(event["iteration"], round(event["metrics"]["reward/solver_mean"], 3))
