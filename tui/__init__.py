"""The Textual dashboard of ``lsp-mlx tui`` (installed as ``lsp_mlx.tui``).

- `state`: a run as seen through its ``events.jsonl`` (no Textual, no MLX, no torch);
- `source`: where events come from (a run folder it follows, or a trainer it launched)
  and how commands reach the trainer (control files; signals as a fallback);
- `glossary`: what every metric means (label, meaning, good direction, unit, range);
- `format`, `render`: numbers, axis ticks and a game as text;
- `app`, `widgets`, `screens`, `start`, ``dashboard.tcss``: the Textual app.

Nothing here imports MLX or torch: the dashboard only reads events and writes control files.
"""
