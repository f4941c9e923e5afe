"""One typed config for a run: dataclasses with help text, read from YAML, overridden by flags.

A YAML preset (``configs/*.yaml``) has one section per dataclass below (``model``, ``lora``,
``game``, ``reward``, ``train``); every key is optional. Flags override the YAML: the common
ones have their own flag (``--model``, ``--iterations`` ...), any other key is set with
``--set section.key=value`` (the value is parsed as YAML). Unknown keys, wrong types and
impossible values raise `ConfigError` with one line that names the problem and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lsp_mlx.errors import ConfigError


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class ModelConfig:
    path: str = _f("default", "'default' (embedded SmolLM2-135M-Instruct), a .gguf file, a local mlx-lm/HF folder or a Hub id")
    dequantize: bool | None = _f(None, "run quantized weights dequantized to fp32 (default: yes on Linux CPU, no on Apple Silicon)")
    base_model: str | None = _f(None, "original Hub id of the base model, recorded for export (auto for 'default')")
    trust_remote_code: bool = _f(False, "allow custom tokenizer code from the model folder")


@dataclass
class LoraConfig:
    rank: int = _f(8, "LoRA rank r")
    scale: float = _f(20.0, "LoRA scale (mlx-lm has no alpha: scale = alpha / r)")
    dropout: float = _f(0.0, "dropout on the LoRA input")
    num_layers: int = _f(-1, "number of transformer blocks, counted from the last, that get LoRA (-1: all)")
    keys: list[str] | None = _f(None, "module paths inside a block to adapt, e.g. [self_attn.q_proj, self_attn.v_proj] (default: every linear layer)")


@dataclass
class GameConfig:
    name: str = _f("lsp", "the game: lsp (with self-reward), lsp-zero (zero-sum)")
    task: str = _f("General knowledge and reasoning", "the Challenger's task description")
    template: str = _f("{instruction}", "the template the Challenger fills; its placeholders are written between the markers")
    num_queries: int = _f(8, "N: Challenger queries per iteration (paper: 8)")
    group_size: int = _f(4, "G: Solver answers per query (paper: not given; 4)")
    alpha_challenger: float = _f(1.0, "alpha_Ch: weight of the Challenger loss (paper: not given; 1.0)")
    challenger_max_tokens: int = _f(96, "max tokens of a Challenger query")
    solver_max_tokens: int = _f(128, "max tokens of a Solver answer")
    temperature: float = _f(1.0, "sampling temperature; 1.0 keeps samples on the policy the loss assumes")
    top_p: float = _f(1.0, "nucleus sampling threshold (1.0: off)")
    system_prompt: str | None = _f(None, "system prompt for the Solver (default: the model's own)")


@dataclass
class RewardConfig:
    source: str = _f("python", "reward R: judge (the reference model judges, 0..7), reward_model, or python (a function)")
    reward_model: str | None = _f(None, "for source=reward_model: a HF sequence-classification model folder or Hub id")
    function: str | None = _f("lsp_mlx.rewards.heuristics:quality", "for source=python: 'package.module:function' with signature (queries, answers) -> rewards")
    judge_max_tokens: int = _f(96, "max tokens of a judgement")
    judge_temperature: float = _f(0.0, "judge sampling temperature (0: greedy, deterministic)")
    judge_mode: str = _f("generate", "generate (justification, then <Score>k</Score>), score_first (the judgement starts with <Score>), or expected (mean of k under the judge's distribution over 0..7: no sampling)")
    normalize: bool = _f(True, "scale judge scores to [0, 1] (score / 7)")


@dataclass
class TrainConfig:
    iterations: int = _f(100, "self-play iterations")
    learning_rate: float = _f(1e-5, "AdamW learning rate for the LoRA weights")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    beta: float = _f(0.05, "beta: KL weight to the reference policy (paper: 0.05)")
    kl_estimator: str = _f("k1", "k1: log(pi/pi_ref) as in the paper; k3: exp(ref-logp)-(ref-logp)-1 per token (GRPO)")
    micro_batch_size: int = _f(8, "sequences per forward/backward pass (gradients are accumulated)")
    max_grad_norm: float = _f(1.0, "clip the gradient norm (0: off)")
    skip_zero_variance: bool = _f(False, "drop Solver groups whose rewards are all equal (they carry no signal)")
    seed: int = _f(0, "random seed (sampling, LoRA init)")
    checkpoint_every: int = _f(10, "save a checkpoint every K iterations (0: only at the end)")
    keep_checkpoints: int = _f(3, "keep the newest K checkpoints (0: keep all)")
    run_dir: str = _f("runs/lsp", "where events.jsonl, config.yaml and checkpoints go")
    print_games: int = _f(1, "games printed to the terminal per iteration (query and best/worst answer)")
    backend: str = _f("mlx", "mlx or torch")


@dataclass
class SQLMConfig:
    verifier: str = _f("arithmetic", "game sqlm: what the problems are: arithmetic (a final number) or code (Python with the Proposer's assert tests, run in a sandbox)")
    solver_reward: str = _f("majority", "game sqlm, arithmetic: majority (1 for agreeing with the group's majority, the paper) or exact (1 for the true value of the problem's arithmetic)")
    proposer_reward: str = _f("band", "game sqlm: band (1 if 0 < agree < n, the paper), band-official (also agree >= 2), r-zero (1-2|p-1/2| minus a near-duplicate penalty) or absolute-zero (1 - solve rate)")
    proposer_every: int = _f(5, "game sqlm: update the Proposer every K iterations (paper: 5); the Solver every iteration")
    problem_prefix: str = _f("", "game sqlm: text every problem starts with, written for the Proposer (e.g. 'What is '); it writes the rest")
    solver_temperature: float | None = _f(None, "game sqlm: the Solver's sampling temperature (default: game.temperature, which then is the Proposer's)")
    references: int = _f(0, "game sqlm: show the Proposer K earlier valid problems (a fresh random draw per proposal, as Absolute Zero does) and ask for a different one; 0: none")
    seed_problems: list[str] = _f([], "game sqlm: problems the reference buffer starts with (used when references > 0)")
    buffer_band_only: bool = _f(True, "game sqlm: only problems the Solver found neither trivial nor hopeless (0 < solve rate < 1) join the reference buffer")
    repetition_penalty: float = _f(1.0, "game sqlm, r-zero: weight lambda of the near-duplicate penalty |C|/B")
    duplicate_threshold: float = _f(0.5, "game sqlm: word-bigram Jaccard similarity at which two problems count as near-duplicates")
    normalize_std: bool = _f(True, "game sqlm: divide group-centred advantages by the group std (GRPO, the paper); false: centring only")
    sandbox_timeout: float = _f(5.0, "game sqlm, code: wall-clock seconds per program run")
    sandbox_memory_mb: int = _f(512, "game sqlm, code: address-space limit per program run")


@dataclass
class SPINConfig:
    data: str = _f("examples/spin_pairs.jsonl", "game spin: JSONL file of {prompt, response} pairs (the SFT data)")
    beta: float = _f(0.1, "game spin: lambda of the SPIN loss (called beta in the official code; paper: 0.1)")
    pairs_per_iteration: int = _f(8, "game spin: (prompt, response) pairs per iteration")
    max_tokens: int = _f(128, "game spin: max tokens of the opponent's response y'")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    game: GameConfig = field(default_factory=GameConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sqlm: SQLMConfig = field(default_factory=SQLMConfig)
    spin: SPINConfig = field(default_factory=SPINConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


REWARD_SOURCES = ("judge", "reward_model", "python")
BACKENDS = ("mlx", "torch")


def _nearest(name: str, options: typing.Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else f" (known: {', '.join(options)})"


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}: write it as [a, b]")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, where) for v in value]
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (str, bool) and isinstance(value, tp):
        return value
    names = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}
    raise ConfigError(f"{where} must be {names.get(tp, tp)}, got {value!r}: fix it in the YAML or flag")


def _section_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def from_dict(data: dict[str, Any] | None, base: Config | None = None) -> Config:
    """Build a Config from nested dicts, on top of ``base`` (defaults when None)."""
    config = dataclasses.replace(base) if base else Config()
    sections = _section_types(Config)
    for section, values in (data or {}).items():
        if section not in sections:
            raise ConfigError(f"unknown config section {section!r}{_nearest(section, sections)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"config section {section!r} must be a mapping of keys to values")
        current = getattr(config, section)
        types_ = _section_types(type(current))
        updates = {}
        for key, value in values.items():
            if key not in types_:
                raise ConfigError(f"unknown config key '{section}.{key}'{_nearest(key, types_)}")
            updates[key] = _coerce(value, types_[key], f"{section}.{key}")
        setattr(config, section, dataclasses.replace(current, **updates))
    validate(config)
    return config


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML preset (or defaults) and apply dotted ``overrides`` such as {"train.seed": 3}."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found: pass an existing YAML file, e.g. configs/demo.yaml")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}: fix its syntax") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections (model, lora, game, reward, train)")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if not key:
            raise ConfigError(f"override {dotted!r} must look like section.key=value, e.g. train.seed=1")
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            data[section] = {}
        data[section][key] = value
    return from_dict(data)


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse ``--set section.key=value`` flags; values are YAML scalars or lists."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} needs a value: write --set section.key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def validate(config: Config) -> None:
    g, t, lo, r = config.game, config.train, config.lora, config.reward
    from lsp_mlx.games import GAMES  # light: a dict of names

    if g.name not in GAMES:
        raise ConfigError(f"unknown game {g.name!r}{_nearest(g.name, GAMES)}")
    checks = [
        (g.num_queries >= 1, f"game.num_queries (N) must be >= 1, got {g.num_queries}"),
        (g.group_size >= 2, f"game.group_size (G) must be >= 2 for group advantages, got {g.group_size}"),
        (g.challenger_max_tokens >= 1, "game.challenger_max_tokens must be >= 1"),
        (g.solver_max_tokens >= 1, "game.solver_max_tokens must be >= 1"),
        (g.temperature >= 0, f"game.temperature must be >= 0, got {g.temperature}"),
        (0 < g.top_p <= 1, f"game.top_p must be in (0, 1], got {g.top_p}"),
        (g.alpha_challenger >= 0, f"game.alpha_challenger must be >= 0, got {g.alpha_challenger}"),
        (t.iterations >= 1, f"train.iterations must be >= 1, got {t.iterations}"),
        (t.learning_rate > 0, f"train.learning_rate must be > 0, got {t.learning_rate}"),
        (t.beta >= 0, f"train.beta must be >= 0 (it weights a KL penalty), got {t.beta}"),
        (t.kl_estimator in ("k1", "k3"), f"train.kl_estimator must be k1 or k3, got {t.kl_estimator!r}"),
        (t.micro_batch_size >= 1, "train.micro_batch_size must be >= 1"),
        (t.max_grad_norm >= 0, "train.max_grad_norm must be >= 0"),
        (t.checkpoint_every >= 0, "train.checkpoint_every must be >= 0"),
        (t.keep_checkpoints >= 0, "train.keep_checkpoints must be >= 0"),
        (t.print_games >= 0, "train.print_games must be >= 0"),
        (lo.rank >= 1, f"lora.rank must be >= 1, got {lo.rank}"),
        (0 <= lo.dropout < 1, f"lora.dropout must be in [0, 1), got {lo.dropout}"),
        (lo.num_layers == -1 or lo.num_layers >= 1, "lora.num_layers must be -1 (all) or >= 1"),
        (r.judge_max_tokens >= 8, "reward.judge_max_tokens must be >= 8 (the judge must write <Score>k</Score>)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    _validate_selfplay(config)
    if t.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {t.backend!r}{_nearest(t.backend, BACKENDS)}")
    if r.source not in REWARD_SOURCES:
        raise ConfigError(f"unknown reward source {r.source!r}{_nearest(r.source, REWARD_SOURCES)}")
    if r.judge_mode not in ("generate", "score_first", "expected"):
        raise ConfigError(f"unknown reward.judge_mode {r.judge_mode!r}{_nearest(r.judge_mode, ('generate', 'score_first', 'expected'))}")
    if r.source == "reward_model" and not r.reward_model:
        raise ConfigError("reward.source is reward_model but reward.reward_model is empty: set it to a model folder or Hub id")
    if g.name == "lsp" and r.source == "judge":
        raise ConfigError(
            "game lsp adds the judge's self-reward R_Q to R, so with reward.source judge the Challenger's "
            "reward -V+V_Q is always 0: use game lsp-zero with the judge, or reward.source reward_model/python with lsp"
        )
    if r.source == "python" and (not r.function or ":" not in r.function):
        raise ConfigError("reward.source is python: set reward.function to 'package.module:function'")


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def help_text() -> str:
    """Every config key with its default and help, for ``lsp-mlx train --help-config``."""
    lines = []
    for section in dataclasses.fields(Config):
        lines.append(f"{section.name}:")
        for f in dataclasses.fields(section.default_factory()):  # type: ignore[misc]
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            lines.append(f"  {f.name}: {default!r}  # {f.metadata.get('help', '')}")
    return "\n".join(lines)


def _validate_selfplay(config: Config) -> None:
    """The sqlm and spin sections (checked whatever the game, so a preset never hides a typo)."""
    q, s = config.sqlm, config.spin
    checks = [
        (q.verifier in ("arithmetic", "code"), f"sqlm.verifier must be arithmetic or code, got {q.verifier!r}"),
        (q.solver_reward in ("majority", "exact"), f"sqlm.solver_reward must be majority or exact, got {q.solver_reward!r}"),
        (q.proposer_reward in ("band", "band-official", "r-zero", "absolute-zero"),
         f"sqlm.proposer_reward must be band, band-official, r-zero or absolute-zero, got {q.proposer_reward!r}"),
        (q.proposer_every >= 1, f"sqlm.proposer_every must be >= 1, got {q.proposer_every}"),
        (q.references >= 0, f"sqlm.references must be >= 0, got {q.references}"),
        (q.solver_temperature is None or q.solver_temperature >= 0, f"sqlm.solver_temperature must be >= 0, got {q.solver_temperature}"),
        (q.repetition_penalty >= 0, f"sqlm.repetition_penalty must be >= 0, got {q.repetition_penalty}"),
        (0 < q.duplicate_threshold <= 1, f"sqlm.duplicate_threshold must be in (0, 1], got {q.duplicate_threshold}"),
        (q.sandbox_timeout > 0, f"sqlm.sandbox_timeout must be > 0 seconds, got {q.sandbox_timeout}"),
        (q.sandbox_memory_mb >= 64, f"sqlm.sandbox_memory_mb must be >= 64 (Python needs it to start), got {q.sandbox_memory_mb}"),
        (not (q.verifier == "code" and q.solver_reward == "exact"),
         "sqlm.solver_reward exact needs sqlm.verifier arithmetic (code is scored by its tests): set solver_reward: majority"),
        (s.beta > 0, f"spin.beta (lambda) must be > 0, got {s.beta}"),
        (s.pairs_per_iteration >= 1, f"spin.pairs_per_iteration must be >= 1, got {s.pairs_per_iteration}"),
        (s.max_tokens >= 1, f"spin.max_tokens must be >= 1, got {s.max_tokens}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
