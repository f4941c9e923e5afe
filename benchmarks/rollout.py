"""Rollout speed and reference-policy memory, measured against peers in one run.

    python benchmarks/rollout.py [--model default] [--queries 4] [--group 4] [--max-tokens 48]

1. Tokens/s of our LSP rollout sampling (`MLXBackend.generate`: one shared prefill per query,
   G samples in one continuous batch) vs plain `mlx_lm.batch_generate` on the same prompts
   repeated G times, vs sequential `mlx_lm.generate` (one sample at a time), same prompts,
   same max tokens, same sampler (temperature 1). Sampled lengths differ slightly between
   methods, so the figure is generated tokens per second of wall time.
2. Peak memory of one training iteration (reference log-probs + update) with the reference
   as the adapter-off model (ours) vs a second copy of the model loaded as the reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the full-sequence oracle

from lsp_mlx.blas import preload  # noqa: E402

BLAS = preload()

import mlx.core as mx  # noqa: E402
from mlx_lm import batch_generate, load, stream_generate  # noqa: E402
from mlx_lm.sample_utils import make_sampler  # noqa: E402
from test_exactness import oracle_batch, oracle_token_logprobs  # noqa: E402

from lsp_mlx import config as cfg  # noqa: E402
from lsp_mlx.backends.mlx import MLXBackend  # noqa: E402
from lsp_mlx.games.prompts import solver_messages  # noqa: E402
from lsp_mlx.records import PolicySample  # noqa: E402

QUESTIONS = [
    "Explain why the sky is blue in two sentences.",
    "Write a short poem about autumn leaves.",
    "What are three tips for learning a new language?",
    "Describe how a bicycle works to a child.",
    "Give a recipe idea that uses rice and beans.",
    "Why do we have seasons on Earth?",
    "Summarise the plot of Romeo and Juliet.",
    "How do vaccines train the immune system?",
]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="default")
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()

    config = cfg.load(
        None,
        {
            "model.path": args.model,
            "game.group_size": args.group,
            "train.micro_batch_size": 8,
            "lora.num_layers": 8,
        },
    )
    backend = MLXBackend(config)
    print(
        f"model {backend.model_path} | {backend.info()['dtype']} | BLAS: {BLAS} | device {mx.default_device()}"
    )
    prompts = [backend.chat_prompt(solver_messages(q)) for q in QUESTIONS[: args.queries]]
    n, G, T = len(prompts), args.group, args.max_tokens
    sampler = make_sampler(temp=1.0)

    backend.generate(prompts[:1], n=2, max_tokens=4)  # warm-up
    mx.random.seed(0)
    t = time.perf_counter()
    ours = backend.generate(prompts, n=G, max_tokens=T, temperature=1.0)
    ours_s = time.perf_counter() - t
    ours_tok = sum(len(c.tokens) for g in ours for c in g)

    model, tok = backend.model, backend.tokenizer
    model.eval()
    mx.random.seed(0)
    t = time.perf_counter()
    plain = batch_generate(
        model,
        tok,
        [p for p in prompts for _ in range(G)],
        max_tokens=T,
        sampler=sampler,
        return_token_ids=True,
        completion_batch_size=n * G,
        prefill_batch_size=n * G,
    )
    plain_s = time.perf_counter() - t
    plain_tok = sum(len(x) for x in plain.token_ids)

    mx.random.seed(0)
    t = time.perf_counter()
    seq_tok = 0
    for p in prompts:
        for _ in range(G):
            for _r in stream_generate(model, tok, p, max_tokens=T, sampler=sampler):
                seq_tok += 1
    seq_s = time.perf_counter() - t
    model.train()

    r_ours, r_plain, r_seq = ours_tok / ours_s, plain_tok / plain_s, seq_tok / seq_s
    print(f"\nrollout ({n} queries x {G} answers, <= {T} tokens each)")
    print(
        f"  lsp-mlx generate (shared prefill)   {r_ours:8.1f} tok/s  ({ours_tok} tokens, {ours_s:.1f}s)"
    )
    print(
        f"  mlx_lm.batch_generate               {r_plain:8.1f} tok/s  ({plain_tok} tokens, {plain_s:.1f}s)"
    )
    print(
        f"  mlx_lm.generate, sequential         {r_seq:8.1f} tok/s  ({seq_tok} tokens, {seq_s:.1f}s)"
    )
    print(
        f"  ratio ours / batch_generate = {r_ours / r_plain:.2f}x, ours / sequential = {r_ours / r_seq:.2f}x"
    )

    # ---- memory: adapter-off reference vs a second model copy
    samples = [
        PolicySample(p, c.tokens, 0.1 * (j - 1.5), 1.0 / (n * G), "solver")
        for p, g in zip(prompts, ours)
        for j, c in enumerate(g)
    ]
    mx.clear_cache()
    mx.reset_peak_memory()
    base_active = mx.get_active_memory()
    backend.train_step(samples, beta=0.05)
    ours_peak = mx.get_peak_memory()

    ref_model, _ = load(str(backend.model_path))  # the alternative: a second copy as pi_ref
    if backend.dequantized or "float32" in backend.info()["dtype"]:
        ref_model.set_dtype(mx.float32)
    mx.eval(ref_model.parameters())
    mx.clear_cache()
    mx.reset_peak_memory()
    rows = config.train.micro_batch_size
    for start in range(0, len(samples), rows):
        chunk = samples[start : start + rows]
        pairs = [(s.prompt, s.completion) for s in chunk]
        inputs, targets, mask = oracle_batch(pairs, rows, 32)
        mx.eval(oracle_token_logprobs(ref_model, inputs, targets) * mask)
    backend.train_step(samples, beta=0.05)
    copy_peak = mx.get_peak_memory()
    print(
        f"\npeak memory of one update ({len(samples)} sequences; model+adapter resident {base_active / 1e9:.2f} GB)"
    )
    print(f"  reference = adapter off (ours)      {ours_peak / 1e9:6.2f} GB")
    print(f"  reference = second model copy       {copy_peak / 1e9:6.2f} GB")
    print(f"  ratio ours / copy = {ours_peak / copy_peak:.2f}x")


if __name__ == "__main__":
    main()
