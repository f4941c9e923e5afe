#!/usr/bin/env bash
# Reproduces docs/proof/games/: five games on arithmetic, two training seeds each, the same
# budget (ITERATIONS iterations of 8 queries x 8 answers), evaluated on two held-out sets.
#
#   bash docs/proof/games/reproduce.sh          # from the repository root, after `make setup`
#
# JOBS runs train side by side (each on one thread); a run that has checkpoints is continued
# with --resume (bit-exact), so raising ITERATIONS extends every run. TRAIN_FLAGS and
# EVAL_FLAGS are added to every train and eval (tests/test_eval_compare.py runs this script
# on a tiny model with them). Then:
#   .venv/bin/python -m lsp_mlx.evaluation.compare docs/proof/games
set -euo pipefail
export ITERATIONS=${ITERATIONS:-15} CURVE_AT=${CURVE_AT:-10}
export RUNS=${RUNS:-runs/games} OUT=${OUT:-docs/proof/games}
export LSP_MLX=${LSP_MLX:-.venv/bin/lsp-mlx} TRAIN_FLAGS=${TRAIN_FLAGS:-} EVAL_FLAGS=${EVAL_FLAGS:-}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-"0 1"}
GAMES=${GAMES:-"sqlm-majority lsp lsp-zero sqlm-band sqlm-absolute-zero"}
# one BLAS thread per job: two jobs on two cores beat one job on two
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT/logs" "$RUNS"

flags() {
  case $1 in
    lsp) echo --config configs/lsp-arithmetic.yaml ;;
    lsp-zero) echo --config configs/lsp-zero-arithmetic.yaml ;;
    sqlm-band) echo --config configs/sqlm-arithmetic.yaml ;;
    sqlm-absolute-zero) echo --config configs/sqlm-arithmetic.yaml --set sqlm.proposer_reward=absolute-zero ;;
    sqlm-majority) echo --config configs/sqlm-arithmetic.yaml --set sqlm.solver_reward=majority ;;
    *) echo "unknown game $1" >&2; return 2 ;;
  esac
}

base_eval() {  # EVAL_SEED: the base model's answers, reused by every adapter eval of that set
  local out="$OUT/base-eval$1.json"
  # shellcheck disable=SC2086
  [ -f "$out" ] || "$LSP_MLX" eval $EVAL_FLAGS --seed "$1" --output "$out" > "$OUT/logs/base-eval$1.log" 2>&1
}

train_and_eval() {  # GAME SEED
  local game=$1 seed=$2 name="$1-seed$2" run="$RUNS/$1-seed$2" resume=()
  [ -d "$run/checkpoints" ] && resume=(--resume)
  # shellcheck disable=SC2046
  "$LSP_MLX" train $(flags "$game") $TRAIN_FLAGS --seed "$seed" --iterations "$ITERATIONS" --run-dir "$run" \
    "${resume[@]}" >> "$OUT/logs/$name.log" 2>&1 || { echo "$name: training failed, see $OUT/logs/$name.log" >&2; return 1; }
  gzip -c "$run/events.jsonl" > "$OUT/logs/$name-events.jsonl.gz"
  for at in "$CURVE_AT:1234" "$ITERATIONS:1234" "$ITERATIONS:99"; do
    local it=${at%%:*} eval_seed=${at##*:}
    # shellcheck disable=SC2086
    "$LSP_MLX" eval $EVAL_FLAGS --adapter "$run" --checkpoint "$it" --seed "$eval_seed" \
      --base-answers "$OUT/base-eval$eval_seed.json" \
      --output "$OUT/$name-iter$it-eval$eval_seed.json" >> "$OUT/logs/$name-eval.log" 2>&1
  done
}
export -f flags base_eval train_and_eval

printf '%s\n' 1234 99 | xargs -P "$JOBS" -I{} bash -c 'base_eval {}'
for game in $GAMES; do for seed in $SEEDS; do echo "$game $seed"; done; done |
  xargs -P "$JOBS" -L1 bash -c 'train_and_eval "$0" "$1"'
