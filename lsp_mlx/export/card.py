"""The model card (``README.md`` with Hub YAML metadata) and the training-curves PNG.

The card says what the adapter is (base, game, reward source, iterations, hyperparameters),
how it did (first and final metrics, the curves) and how to load it with mlx-lm and PEFT.
Everything comes from the run folder: ``config.yaml`` and ``events.jsonl``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsp_mlx.export.history import CURVES_FILE, RunHistory

MARKER_TAG = "lsp-mlx"  # every card we write has it; the exporter recognises its own folders by it

# the metrics a reader cares about first, in this order (names from lsp_mlx.trainer)
KEY_METRICS = [
    "reward/solver_mean",
    "reward/challenger_mean",
    "reward/base_mean",
    "self_reward/mean",
    "loss",
    "kl",
    "zero_variance_groups",
    "answer_tokens_mean",
    "query_tokens_mean",
    "tokens_per_sec",
]


def _license_from_card(folder: Path) -> str | None:
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    from huggingface_hub import ModelCard

    try:
        value = ModelCard.load(readme).data.license
    except Exception:  # a hand-written README without YAML is common and not our problem
        return None
    return value if isinstance(value, str) else None


def _license_from_gguf(path: Path) -> str | None:
    try:
        from gguf import GGUFReader  # optional: in the [torch] and [test] extras
    except ImportError:
        return None
    try:
        field_ = GGUFReader(str(path)).fields.get("general.license")
        value = field_.contents() if field_ is not None else None
    except Exception:  # an unreadable GGUF only costs us the license line
        return None
    return value if isinstance(value, str) else None


def base_license(model_dir: Path | None, base_model: str | None) -> tuple[str, str]:
    """``(license id, where it came from)``; ``("other", reason)`` when unknown.

    Sources: the base folder's own model card, its config.json, the GGUF it was converted
    from (``general.license``), and for the embedded model the license of its GGUF.
    """
    from lsp_mlx.models import DEFAULT_BASE_MODEL

    if model_dir is not None and model_dir.is_dir():
        found = _license_from_card(model_dir)
        if found:
            return found, "the base model's model card"
        try:
            found = json.loads((model_dir / "config.json").read_text()).get("license")
        except (OSError, ValueError, AttributeError):
            found = None
        if isinstance(found, str) and found:
            return found, "the base model's config.json"
        try:
            source = json.loads((model_dir / "lsp_mlx_source.json").read_text())
        except (OSError, ValueError):
            source = {}
        gguf_path = source.get("gguf_path") if isinstance(source, dict) else None
        if gguf_path and Path(gguf_path).is_file():
            found = _license_from_gguf(Path(gguf_path))
            if found:
                return found, "the GGUF metadata of the base model"
    if base_model == DEFAULT_BASE_MODEL:
        try:
            from lsp_mlx.models.embedded import embedded_gguf_path

            found = _license_from_gguf(embedded_gguf_path())
        except Exception:  # the embedded package may be absent on the exporting machine
            found = None
        return found or "apache-2.0", "the embedded SmolLM2 GGUF metadata (apache-2.0)"
    return "other", "unknown: the base model records no license; check the base model's terms"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def metrics_table(history: RunHistory) -> str:
    if not history.metrics:
        return "_No metrics were recorded for this run._"
    (first_it, first), (last_it, last) = history.metrics[0], history.metrics[-1]
    names = [n for n in KEY_METRICS if n in last] or sorted(
        n for n in last if not n.startswith(("time/", "memory/"))
    )
    rows = [f"| metric | iteration {first_it} | iteration {last_it} (final) |", "|---|---|---|"]
    rows += [f"| `{n}` | {_fmt(first.get(n))} | {_fmt(last.get(n))} |" for n in names]
    return "\n".join(rows)


def _reward_text(reward: dict[str, Any]) -> str:
    source = reward.get("source")
    if source == "judge":
        return "LLM judge: the base model (adapter off) scores each answer from 0 to 7" + (
            ", scaled to [0, 1]" if reward.get("normalize", True) else ""
        )
    if source == "reward_model":
        return f"reward model `{reward.get('reward_model')}`"
    if source == "python":
        return f"Python function `{reward.get('function')}`"
    return str(source)


def hyperparameter_table(
    config: dict[str, Any], lora: dict[str, Any], num_layers: Any, peft: dict[str, Any]
) -> str:
    game, train, reward = config.get("game", {}), config.get("train", {}), config.get("reward", {})
    rank, scale = lora.get("rank"), lora.get("scale")
    rows = [
        ("game", game.get("name")),
        ("reward source", _reward_text(reward) if reward else None),
        ("LoRA rank r", rank),
        (
            "LoRA scale (mlx-lm) / lora_alpha (PEFT)",
            f"{_fmt(scale)} / {_fmt(peft.get('lora_alpha'))}",
        ),
        ("LoRA dropout", lora.get("dropout")),
        ("LoRA blocks (from the last)", "all" if num_layers in (-1, None) else num_layers),
        (
            "adapted modules",
            peft.get("target_modules")
            if isinstance(peft.get("target_modules"), list)
            else "see adapter_config.json",
        ),
        ("learning rate (AdamW)", train.get("learning_rate")),
        (
            "KL weight beta / estimator",
            f"{_fmt(train.get('beta'))} / {train.get('kl_estimator', '-')}",
        ),
        ("queries per iteration N", game.get("num_queries")),
        ("answers per query G", game.get("group_size")),
        # runs written before the role-neutral names hold the old keys
        ("query loss weight alpha_Ch", game.get("query_weight", game.get("alpha_challenger"))),
        ("sampling temperature", game.get("temperature")),
        (
            "max tokens (query / answer)",
            f"{_fmt(game.get('query_max_tokens', game.get('challenger_max_tokens')))} / "
            f"{_fmt(game.get('answer_max_tokens', game.get('solver_max_tokens')))}",
        ),
        ("seed", train.get("seed")),
        ("backend", train.get("backend")),
    ]
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in rows if v is not None]
    return "\n".join(lines)


@dataclass
class CardInfo:
    """Everything the card states, gathered by the exporter."""

    base_model: str | None  # the Hub id, when known
    base_ref: str  # what PEFT's base_model_name_or_path holds (the Hub id or a local path)
    license: str
    license_source: str
    game: str
    iteration: int | None
    history: RunHistory
    run_config: dict[str, Any]
    lora: dict[str, Any]
    num_layers: Any
    peft: dict[str, Any]
    repo_id: str | None
    has_curves: bool
    fused: bool
    approximate_base: str | None  # why the public base differs slightly from the trained-over one


def _title(info: CardInfo) -> str:
    if info.repo_id:
        return info.repo_id.split("/")[-1]
    base = (info.base_model or Path(info.base_ref).name).split("/")[-1]
    return f"{base} + {info.game} self-play LoRA"


def _usage(info: CardInfo) -> str:
    repo = info.repo_id or "path/to/this/folder"
    base = info.base_model or info.base_ref
    fetch = (
        f'adapter = snapshot_download("{repo}", allow_patterns=["adapters.safetensors", "adapter_config.json"])'
        if info.repo_id
        else f'adapter = "{repo}"'
    )
    parts = [
        "### mlx-lm (Apple Silicon)",
        "",
        "```bash",
        "pip install mlx-lm",
        *(
            [
                f"hf download {repo} adapters.safetensors adapter_config.json --local-dir adapter"
                "  # --adapter-path takes a local folder"
            ]
            if info.repo_id
            else []
        ),
        f'mlx_lm.generate --model {base} --adapter-path {"adapter" if info.repo_id else repo} --prompt "Hello"',
        "```",
        "",
        "```python",
        *(["from huggingface_hub import snapshot_download"] if info.repo_id else []),
        "from mlx_lm import generate, load",
        "",
        fetch,
        f'model, tokenizer = load("{base}", adapter_path=adapter)',
        'messages = [{"role": "user", "content": "Hello"}]',
        "prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)",
        "print(generate(model, tokenizer, prompt=prompt, max_tokens=200))",
        "```",
        "",
        "### transformers + PEFT",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{base}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{base}")',
        f'model = PeftModel.from_pretrained(base, "{repo}")',
        "```",
        "",
        "`adapter_config.json` serves both libraries: mlx-lm reads `fine_tune_type`, `num_layers` and "
        "`lora_parameters`, PEFT reads the `LoraConfig` fields. PEFT may warn that it ignores the mlx-lm keys; "
        "that is expected.",
    ]
    if info.fused:
        parts += [
            "",
            "### Fused model (mlx-lm, no adapter needed)",
            "",
            "`fused/` holds the base with the adapter merged into its weights (dequantized if the base was quantized):",
            "",
            "```python",
            "from mlx_lm import load",
            "",
            f'model, tokenizer = load("{repo}/fused")'
            if not info.repo_id
            else f'model, tokenizer = load(snapshot_download("{repo}", allow_patterns=["fused/*"]) + "/fused")',
            "```",
        ]
    parts += [
        "",
        "### lsp-mlx",
        "",
        "```bash",
        f"lsp-mlx chat --adapter {'adapter' if info.repo_id else repo} --compare",
        "```",
    ]
    return "\n".join(parts)


def render_card(info: CardInfo) -> str:
    """The full ``README.md``: YAML metadata for the Hub, then the text."""
    from huggingface_hub import ModelCardData

    tags = [
        MARKER_TAG,
        "self-play",
        f"game:{info.game}",
        info.game,
        "lora",
        "peft",
        "mlx",
        "mlx-lm",
    ]
    data = ModelCardData(
        base_model=info.base_model,
        library_name="peft",
        license=info.license,
        pipeline_tag="text-generation",
        tags=list(dict.fromkeys(tags)),
    )
    h = info.history
    trained = f"{info.iteration if info.iteration is not None else h.trained_iterations or '?'}"
    planned = f" of {h.planned_iterations} planned" if h.planned_iterations else ""
    base_link = (
        f"[{info.base_model}](https://huggingface.co/{info.base_model})"
        if info.base_model
        else f"`{info.base_ref}`"
    )
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {_title(info)}",
        "",
        f"A LoRA adapter for {base_link}, trained by language self-play (game `{info.game}`) with "
        "lsp-mlx on MLX: the model plays Challenger (writes queries) and Solver "
        "(answers them) against itself, and learns from a reward without any human data.",
        "",
        "## Training",
        "",
        f"- Iterations: {trained}{planned}" + (f" (run status: {h.status})" if h.status else ""),
        f"- Reward: {_reward_text(info.run_config.get('reward', {})) if info.run_config.get('reward') else 'unknown'}",
        *([f"- Device: {h.device}"] if h.device else []),
        f"- License: `{info.license}`, from {info.license_source}",
        *([f"- Note: {info.approximate_base}"] if info.approximate_base else []),
        "",
        hyperparameter_table(info.run_config, info.lora, info.num_layers, info.peft),
        "",
        "## Results",
        "",
        metrics_table(h),
        "",
        *([f"![reward, loss and KL curves]({CURVES_FILE})", ""] if info.has_curves else []),
        "Rewards are means over each iteration's games; `kl` is the sequence log-ratio to the base "
        "(adapter off). Self-play rewards measure the game, not general quality: try the model yourself.",
        "",
        "## How to use",
        "",
        _usage(info),
        "",
        "## Files",
        "",
        "| file | what |",
        "|---|---|",
        "| `adapters.safetensors` | the adapter in mlx-lm format (`lora_a` (in, r), `lora_b` (r, out)) |",
        "| `adapter_model.safetensors` | the same adapter in PEFT format (`lora_A` = `lora_a`ᵀ, `lora_B` = `lora_b`ᵀ) |",
        "| `adapter_config.json` | mlx-lm and PEFT config in one file (`lora_alpha` = scale × r) |",
        *([f"| `{CURVES_FILE}` | reward, loss and KL per iteration |"] if info.has_curves else []),
        *(
            ["| `fused/` | the base model with the adapter merged in (mlx-lm format) |"]
            if info.fused
            else []
        ),
        "",
    ]
    return "\n".join(lines)
