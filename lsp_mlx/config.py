"""One typed config for a run: dataclasses with help text, read from YAML, overridden by flags.

A YAML preset (``configs/*.yaml``) has one section per dataclass below (``model``, ``lora``,
``game``, ``reward``, ``train``); every key is optional. Flags override the YAML: the common
ones have their own flag (``--model``, ``--iterations`` ...), any other key is set with
``--set section.key=value`` (the value is parsed as YAML). Unknown keys, wrong types and
impossible values raise `ConfigError` with one line that names the problem and the fix.

Every number must be finite and inside a stated range (upper bounds included, so a typo such
as ``num_queries: 100000000`` fails here rather than after minutes of allocation). Floats are
accepted in any common spelling (``1e-4``, which PyYAML reads as a string, included). Keys
renamed to role-neutral names (`RENAMED_KEYS`) are still read, with a one-line hint. A
``python`` reward function is imported and its signature checked here, before a run writes
anything.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lsp_mlx.errors import ConfigError
from lsp_mlx.verifiers.sandbox import ISOLATIONS


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class ModelConfig:
    path: str = _f(
        "default",
        "'default' (embedded SmolLM2-135M-Instruct), a .gguf file, a local mlx-lm/HF folder or a Hub id",
    )
    dequantize: bool | None = _f(
        None,
        "run quantized weights dequantized to fp32 (default: yes on Linux CPU, no on Apple Silicon)",
    )
    base_model: str | None = _f(
        None, "original Hub id of the base model, recorded for export (auto for 'default')"
    )
    trust_remote_code: bool = _f(False, "allow custom tokenizer code from the model folder")


@dataclass
class LoraConfig:
    rank: int = _f(8, "LoRA rank r")
    scale: float = _f(20.0, "LoRA scale (mlx-lm has no alpha: scale = alpha / r)")
    dropout: float = _f(0.0, "dropout on the LoRA input")
    num_layers: int = _f(
        -1, "number of transformer blocks, counted from the last, that get LoRA (-1: all)"
    )
    keys: list[str] | None = _f(
        None,
        "module paths inside a block to adapt, e.g. [self_attn.q_proj, self_attn.v_proj] (default: every linear layer)",
    )


@dataclass
class GameConfig:
    name: str = _f("lsp", "the game: lsp (with self-reward), lsp-zero (zero-sum)")
    task: str = _f("General knowledge and reasoning", "the Challenger's task description")
    template: str = _f(
        "{instruction}",
        "the template the Challenger fills; its placeholders are written between the markers",
    )
    num_queries: int = _f(8, "N: Challenger queries per iteration (paper: 8)")
    group_size: int = _f(4, "G: Solver answers per query (paper: not given; 4)")
    query_weight: float = _f(
        1.0,
        "alpha_Ch: weight of the query-writer's (Challenger's, Proposer's) loss (paper: not given; 1.0)",
    )
    query_prefix: str = _f(
        "",
        "text every query starts with (e.g. 'What is'), written into the query writer's prompt "
        "after the start marker: the Challenger or Proposer writes the rest and is trained on that",
    )
    query_max_tokens: int = _f(96, "max tokens of a query (the Challenger's or Proposer's output)")
    answer_max_tokens: int = _f(128, "max tokens of an answer (the Solver's output)")
    temperature: float = _f(
        1.0, "sampling temperature; 1.0 keeps samples on the policy the loss assumes"
    )
    top_p: float = _f(1.0, "nucleus sampling threshold (1.0: off)")
    system_prompt: str | None = _f(None, "system prompt for the Solver (default: the model's own)")


@dataclass
class RewardConfig:
    source: str = _f(
        "python",
        "reward R: judge (the reference model judges, 0..7), reward_model, or python (a function)",
    )
    reward_model: str | None = _f(
        None, "for source=reward_model: a HF sequence-classification model folder or Hub id"
    )
    function: str | None = _f(
        "lsp_mlx.rewards.heuristics:quality",
        "for source=python: 'package.module:function' with signature (queries, answers) -> rewards",
    )
    judge_max_tokens: int = _f(96, "max tokens of a judgement")
    judge_temperature: float = _f(0.0, "judge sampling temperature (0: greedy, deterministic)")
    judge_mode: str = _f(
        "generate",
        "generate (justification, then <Score>k</Score>), score_first (the judgement starts with <Score>), or expected (mean of k under the judge's distribution over 0..7: no sampling)",
    )
    normalize: bool = _f(True, "scale judge scores to [0, 1] (score / 7)")


@dataclass
class TrainConfig:
    iterations: int = _f(100, "self-play iterations")
    learning_rate: float = _f(1e-5, "AdamW learning rate for the LoRA weights")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    beta: float = _f(0.05, "beta: KL weight to the reference policy (paper: 0.05)")
    kl_estimator: str = _f(
        "k1", "k1: log(pi/pi_ref) as in the paper; k3: exp(ref-logp)-(ref-logp)-1 per token (GRPO)"
    )
    micro_batch_size: int = _f(8, "sequences per forward/backward pass (gradients are accumulated)")
    max_grad_norm: float = _f(1.0, "clip the gradient norm (0: off)")
    skip_zero_variance: bool = _f(
        False, "drop Solver groups whose rewards are all equal (they carry no signal)"
    )
    seed: int = _f(0, "random seed (sampling, LoRA init)")
    checkpoint_every: int = _f(10, "save a checkpoint every K iterations (0: only at the end)")
    keep_checkpoints: int = _f(3, "keep the newest K checkpoints (0: keep all)")
    run_dir: str = _f("runs/lsp", "where events.jsonl, config.yaml and checkpoints go")
    print_games: int = _f(
        1, "games printed to the terminal per iteration (query and best/worst answer)"
    )
    backend: str = _f("mlx", "mlx or torch")
    report_to: list[str] = _f(
        [],
        "experiment trackers that also receive the run's events: any of tensorboard, wandb, trackio ([] or none: off)",
    )
    tracker_project: str = _f("lsp-mlx", "the trackers' project name")
    run_name: str | None = _f(
        None, "the run's name in the trackers (default: the run folder's name)"
    )


@dataclass
class SQLMConfig:
    verifier: str = _f(
        "arithmetic",
        "game sqlm: what the problems are: arithmetic (a final number) or code (Python with the Proposer's assert tests, run in a sandbox)",
    )
    solver_reward: str = _f(
        "majority",
        "game sqlm, arithmetic: majority (1 for agreeing with the group's majority, the paper) or exact (1 for the true value of the problem's arithmetic)",
    )
    proposer_reward: str = _f(
        "band",
        "game sqlm: band (1 if 0 < agree < n, the paper), band-official (also agree >= 2), r-zero (1-2|p-1/2| minus a near-duplicate penalty) or absolute-zero (1 - solve rate)",
    )
    proposer_every: int = _f(
        5,
        "game sqlm: update the Proposer every K iterations (paper: 5); the Solver every iteration",
    )
    solver_temperature: float | None = _f(
        None,
        "game sqlm: the Solver's sampling temperature (default: game.temperature, which then is the Proposer's)",
    )
    references: int = _f(
        0,
        "game sqlm: show the Proposer K earlier valid problems (a fresh random draw per proposal, as Absolute Zero does) and ask for a different one; 0: none",
    )
    seed_problems: list[str] = _f(
        [], "game sqlm: problems the reference buffer starts with (used when references > 0)"
    )
    buffer_band_only: bool = _f(
        True,
        "game sqlm: only problems the Solver found neither trivial nor hopeless (0 < solve rate < 1) join the reference buffer",
    )
    repetition_penalty: float = _f(
        1.0, "game sqlm, r-zero: weight lambda of the near-duplicate penalty |C|/B"
    )
    duplicate_threshold: float = _f(
        0.5,
        "game sqlm: word-bigram Jaccard similarity at which two problems count as near-duplicates",
    )
    normalize_std: bool = _f(
        True,
        "game sqlm: divide group-centred advantages by the group std (GRPO, the paper); false: centring only",
    )
    sandbox_timeout: float = _f(5.0, "game sqlm, code: wall-clock seconds per program run")
    sandbox_memory_mb: int = _f(512, "game sqlm, code: address-space limit per program run")
    sandbox_isolation: str = _f(
        "os",
        "game sqlm, code: os (OS-level isolation required; code tasks are refused where none is available) or python (the weaker in-interpreter mode, opt-in)",
    )


@dataclass
class SPINConfig:
    data: str = _f(
        "examples/spin_pairs.jsonl",
        "game spin: JSONL file of {prompt, response} pairs (the SFT data)",
    )
    beta: float = _f(
        0.1, "game spin: lambda of the SPIN loss (called beta in the official code; paper: 0.1)"
    )
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
TRACKERS = ("tensorboard", "wandb", "trackio")
SEED_MAX = 2**32 - 1  # numpy's and mlx's seeds are unsigned 32-bit

# Old spelling -> new one. The old keys are still read (YAML and --set), with a one-line hint.
RENAMED_KEYS = {
    "game.challenger_max_tokens": "game.query_max_tokens",
    "game.solver_max_tokens": "game.answer_max_tokens",
    "game.alpha_challenger": "game.query_weight",
    "sqlm.problem_prefix": "game.query_prefix",
}
_hinted: set[str] = set()

# YAML 1.1 (PyYAML) reads 1e-4 and 5e3 as strings; these spellings are numbers all the same.
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _nearest(name: object, options: typing.Iterable[str]) -> str:
    options = list(options)
    match = difflib.get_close_matches(str(name), options, n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else f" (known: {', '.join(options)})"


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints and numeric strings are accepted where
    floats are, and a float must be finite."""
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
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            number = float(value)
        elif isinstance(value, str) and value.strip().lower().lstrip("+-.") in (
            "inf",
            "nan",
            "infinity",
        ):
            number = float("nan")
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(
                    f"{where} must be a finite number, got {value!r}: write a number such as 0.5 or 1e-5"
                )
            return number
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (str, bool) and isinstance(value, tp):
        return value
    names = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}
    raise ConfigError(
        f"{where} must be {names.get(tp, tp)}, got {value!r}: fix it in the YAML or flag"
    )


def _section_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _renamed(data: dict[Any, Any], hints: list[str]) -> dict[Any, Any]:
    """Move old key spellings to the new ones, across sections too; a hint per old key."""
    out = {section: dict(v) if isinstance(v, dict) else v for section, v in data.items()}
    for old, new in RENAMED_KEYS.items():
        old_section, _, old_key = old.partition(".")
        new_section, _, new_key = new.partition(".")
        values = out.get(old_section)
        if not isinstance(values, dict) or old_key not in values:
            continue
        if out.get(new_section) is None:
            out[new_section] = {}
        target = out[new_section]
        if not isinstance(target, dict):
            continue  # reported as a section that is not a mapping
        if new_key in target:
            raise ConfigError(
                f"{old} and {new} are both set: {old} is the old name of {new}, keep only {new}"
            )
        target[new_key] = values.pop(old_key)
        hints.append(old)
    return out


def _tracker_list(value: Any) -> Any:
    """train.report_to also takes one name or a comma-separated string; none means off."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and [str(v).lower() for v in value] == ["none"]:
        return []
    return value


def from_dict(data: dict[str, Any] | None, base: Config | None = None) -> Config:
    """Build a Config from nested dicts, on top of ``base`` (defaults when None)."""
    config = dataclasses.replace(base) if base else Config()
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"a config must be a mapping of sections (model, lora, game, reward, train), got {data!r}"
        )
    sections = _section_types(Config)
    hints: list[str] = []
    for section, values in _renamed(data or {}, hints).items():
        if section not in sections:
            raise ConfigError(f"unknown config section {section!r}{_nearest(section, sections)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(
                f"config section {section!r} must be a mapping of keys to values, got {values!r}: "
                f"write '{section}:' followed by indented 'key: value' lines"
            )
        current = getattr(config, section)
        types_ = _section_types(type(current))
        updates = {}
        for key, value in values.items():
            if key not in types_:
                raise ConfigError(f"unknown config key '{section}.{key}'{_nearest(key, types_)}")
            if (section, key) == ("train", "report_to"):
                value = _tracker_list(value)
            updates[key] = _coerce(value, types_[key], f"{section}.{key}")
        setattr(config, section, dataclasses.replace(current, **updates))
    validate(config)
    # after validation: an invalid config is one error line, not hints and an error
    for old in hints:
        if old not in _hinted:
            _hinted.add(old)
            new = RENAMED_KEYS[old]
            print(
                f"lsp-mlx: note: {old} is now called {new}: rename it in your config or --set flag",
                file=sys.stderr,
            )
    return config


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML preset (or defaults) and apply dotted ``overrides`` such as {"train.seed": 3}."""
    from lsp_mlx.readers import read_yaml

    data: Any = {}
    if path is not None:
        if not str(path).strip():
            raise ConfigError("--config is empty: pass a YAML file, e.g. configs/demo.yaml")
        path = Path(path)
        if not path.is_file():
            problem = (
                "is a folder"
                if path.is_dir()
                else "is not a regular file"
                if path.exists()
                else "not found"
            )
            raise ConfigError(
                f"config file {str(path)!r} {problem}: pass an existing YAML file, e.g. configs/demo.yaml"
            )
        data = read_yaml(path, "the config file") or {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"config file {str(path)!r} must hold a mapping of sections (model, lora, game, reward, train), got {data!r}"
            )
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if not section or not key:
            raise ConfigError(
                f"override {dotted!r} must look like section.key=value, e.g. train.seed=1"
            )
        if data.get(section) is None:
            data[section] = {}
        elif not isinstance(data[section], dict):
            raise ConfigError(
                f"config section {section!r} must be a mapping of keys to values, got {data[section]!r}: "
                f"write '{section}:' followed by indented 'key: value' lines"
            )
        data[section][key] = value
    return from_dict(data)


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse ``--set section.key=value`` flags; values are YAML scalars or lists."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set {item!r} needs a key and a value: write --set section.key=value"
            )
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def _check_finite(config: Config) -> None:
    """Every float of every section is finite (a Config can also be built in code)."""
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(
                    f"{section.name}.{f.name} must be a finite number, got {value}: write a number such as 0.5 or 1e-5"
                )


def validate(config: Config) -> None:
    """Every value in range, before anything is written or any model is loaded (one line each)."""
    g, t, lo, r, m = config.game, config.train, config.lora, config.reward, config.model
    from lsp_mlx.games.names import GAMES

    _check_finite(config)
    if g.name not in GAMES:
        raise ConfigError(f"unknown game {g.name!r}{_nearest(g.name, GAMES)}")
    # fmt: off
    checks = [
        (bool(m.path.strip()), "model.path is empty: set it to 'default', a .gguf file, a model folder or a Hub id"),
        (1 <= g.num_queries <= 4096, f"game.num_queries (N) must be in 1..4096 (each query is generated and trained on every iteration), got {g.num_queries}"),
        (2 <= g.group_size <= 1024, f"game.group_size (G) must be in 2..1024 (two answers at least for group advantages), got {g.group_size}"),
        (g.num_queries * g.group_size <= 65536, f"game.num_queries x game.group_size must be <= 65536 answers per iteration, got {g.num_queries * g.group_size}: lower one of them"),
        (1 <= g.query_max_tokens <= 131072, f"game.query_max_tokens must be in 1..131072, got {g.query_max_tokens}"),
        (1 <= g.answer_max_tokens <= 131072, f"game.answer_max_tokens must be in 1..131072, got {g.answer_max_tokens}"),
        (0 <= g.temperature <= 10, f"game.temperature must be in [0, 10] (above that sampling is noise), got {g.temperature}"),
        (0 < g.top_p <= 1, f"game.top_p must be in (0, 1], got {g.top_p}"),
        (g.query_weight >= 0, f"game.query_weight must be >= 0, got {g.query_weight}"),
        (1 <= t.iterations <= 10**9, f"train.iterations must be in 1..1000000000, got {t.iterations}"),
        (0 < t.learning_rate <= 1, f"train.learning_rate must be in (0, 1] (LoRA usually wants 1e-5..1e-4), got {t.learning_rate}"),
        (t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}"),
        (t.beta >= 0, f"train.beta must be >= 0 (it weights a KL penalty), got {t.beta}"),
        (t.kl_estimator in ("k1", "k3"), f"train.kl_estimator must be k1 or k3, got {t.kl_estimator!r}"),
        (1 <= t.micro_batch_size <= 65536, f"train.micro_batch_size must be in 1..65536, got {t.micro_batch_size}"),
        (t.max_grad_norm >= 0, f"train.max_grad_norm must be >= 0 (0: off), got {t.max_grad_norm}"),
        (0 <= t.seed <= SEED_MAX, f"train.seed must be in 0..{SEED_MAX}, got {t.seed}"),
        (t.checkpoint_every >= 0, f"train.checkpoint_every must be >= 0 (0: only at the end), got {t.checkpoint_every}"),
        (t.keep_checkpoints >= 0, f"train.keep_checkpoints must be >= 0 (0: keep all), got {t.keep_checkpoints}"),
        (t.print_games >= 0, f"train.print_games must be >= 0, got {t.print_games}"),
        (bool(t.run_dir.strip()), "train.run_dir is empty: set it to a folder for the run, e.g. runs/lsp"),
        (bool(t.tracker_project.strip()), "train.tracker_project is empty: set it to a project name, e.g. lsp-mlx"),
        (t.run_name is None or bool(t.run_name.strip()), "train.run_name is empty: set a name or leave it out (default: the run folder's name)"),
        (1 <= lo.rank <= 4096, f"lora.rank must be in 1..4096, got {lo.rank}"),
        (lo.scale > 0, f"lora.scale must be > 0, got {lo.scale}"),
        (0 <= lo.dropout < 1, f"lora.dropout must be in [0, 1), got {lo.dropout}"),
        (lo.num_layers == -1 or lo.num_layers >= 1, f"lora.num_layers must be -1 (all) or >= 1, got {lo.num_layers}"),
        (lo.keys is None or (bool(lo.keys) and all(k.strip() for k in lo.keys)),
         "lora.keys must list module paths such as [self_attn.q_proj], or be left out (every linear layer)"),
        (8 <= r.judge_max_tokens <= 131072, f"reward.judge_max_tokens must be in 8..131072 (the judge must write <Score>k</Score>), got {r.judge_max_tokens}"),
        (0 <= r.judge_temperature <= 10, f"reward.judge_temperature must be in [0, 10], got {r.judge_temperature}"),
    ]
    # fmt: on
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    _validate_trackers(t.report_to)
    _validate_selfplay(config)
    if t.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {t.backend!r}{_nearest(t.backend, BACKENDS)}")
    if r.source not in REWARD_SOURCES:
        raise ConfigError(f"unknown reward source {r.source!r}{_nearest(r.source, REWARD_SOURCES)}")
    if r.judge_mode not in ("generate", "score_first", "expected"):
        raise ConfigError(
            f"unknown reward.judge_mode {r.judge_mode!r}{_nearest(r.judge_mode, ('generate', 'score_first', 'expected'))}"
        )
    if r.source == "reward_model" and not r.reward_model:
        raise ConfigError(
            "reward.source is reward_model but reward.reward_model is empty: set it to a model folder or Hub id"
        )
    if g.name == "lsp" and r.source == "judge":
        raise ConfigError(
            "game lsp adds the judge's self-reward R_Q to R, so with reward.source judge the Challenger's "
            "reward -V+V_Q is always 0: use game lsp-zero with the judge, or reward.source reward_model/python with lsp"
        )
    if r.source == "python":
        if not r.function or ":" not in r.function:
            raise ConfigError(
                "reward.source is python: set reward.function to 'package.module:function'"
            )
        from lsp_mlx.rewards.python_fn import load_function

        load_function(r.function)  # imported and its signature checked now, not mid-run


def _validate_trackers(names: list[str]) -> None:
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(
                f"unknown tracker {name!r} in train.report_to{_nearest(name, TRACKERS)}; none switches tracking off"
            )
    if len(set(names)) != len(names):
        raise ConfigError(
            f"train.report_to names a tracker twice ({', '.join(names)}): list each once"
        )


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
    # fmt: off
    checks = [
        (q.verifier in ("arithmetic", "code"), f"sqlm.verifier must be arithmetic or code, got {q.verifier!r}"),
        (q.solver_reward in ("majority", "exact"), f"sqlm.solver_reward must be majority or exact, got {q.solver_reward!r}"),
        (q.proposer_reward in ("band", "band-official", "r-zero", "absolute-zero"),
         f"sqlm.proposer_reward must be band, band-official, r-zero or absolute-zero, got {q.proposer_reward!r}"),
        (1 <= q.proposer_every <= 10**6, f"sqlm.proposer_every must be in 1..1000000, got {q.proposer_every}"),
        (0 <= q.references <= 1024, f"sqlm.references must be in 0..1024, got {q.references}"),
        (q.solver_temperature is None or q.solver_temperature >= 0, f"sqlm.solver_temperature must be >= 0, got {q.solver_temperature}"),
        (q.repetition_penalty >= 0, f"sqlm.repetition_penalty must be >= 0, got {q.repetition_penalty}"),
        (0 < q.duplicate_threshold <= 1, f"sqlm.duplicate_threshold must be in (0, 1], got {q.duplicate_threshold}"),
        (0 < q.sandbox_timeout <= 86400, f"sqlm.sandbox_timeout must be in (0, 86400] seconds, got {q.sandbox_timeout}"),
        (64 <= q.sandbox_memory_mb <= 1_048_576, f"sqlm.sandbox_memory_mb must be in 64..1048576 (Python needs 64 MB to start), got {q.sandbox_memory_mb}"),
        (q.sandbox_isolation in ISOLATIONS, f"sqlm.sandbox_isolation must be os or python, got {q.sandbox_isolation!r}"),
        (not (q.verifier == "code" and q.solver_reward == "exact"),
         "sqlm.solver_reward exact needs sqlm.verifier arithmetic (code is scored by its tests): set solver_reward: majority"),
        (s.beta > 0, f"spin.beta (lambda) must be > 0, got {s.beta}"),
        (1 <= s.pairs_per_iteration <= 65536, f"spin.pairs_per_iteration must be in 1..65536, got {s.pairs_per_iteration}"),
        (1 <= s.max_tokens <= 131072, f"spin.max_tokens must be in 1..131072, got {s.max_tokens}"),
        (bool(s.data.strip()), "spin.data is empty: set it to a JSONL file of {prompt, response} pairs"),
    ]
    # fmt: on
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
