"""The bad-input table: every command, every kind of mistake -> exit 2, one line, nothing written.

Each case is a command line a user could type, with placeholders for real files built once
per module: a tiny trained run (the real trainer, one iteration), a second tiny model of
another size (an adapter on the wrong base), damaged copies of runs, models, configs, prompt
files and event logs. Each case asserts exit code 2, exactly one stderr line that starts with
``lsp-mlx: error:`` and names the problem (``needle``), no traceback, and that no file under
the fixture folder or the case's working folder appeared, vanished or changed.

Most cases run in-process through `lsp_mlx.cli.main` (fast); `SUBPROCESS` runs a sample as
real processes. Cases fail before any model is loaded where they can; the wrong-base cases
load the tiny models only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from lsp_mlx.cli import main

TINY = str(REPO / "configs" / "tiny.yaml")
UNWRITABLE = "/proc/lsp-mlx-cannot-write-here"  # /proc refuses new files, even to root


@pytest.fixture(scope="module")
def world(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every file the cases point at; built once, then never changed by a case."""
    from lsp_mlx.models.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("bad-inputs")
    run = root / "run"
    code = main(
        ["train", "--config", TINY, "--model", str(tiny_model), "--iterations", "1",
         "--run-dir", str(run)]
    )  # fmt: skip
    assert code == 0, "the tiny run must train for the table to mean anything"
    w = {"root": str(root), "run": str(run), "model": str(tiny_model), "tiny": TINY}
    w["other_model"] = str(make_tiny_model(root / "other-model", seed=1, hidden_size=32))

    def copy_run(name: str) -> Path:
        dst = root / name
        shutil.copytree(run, dst)
        w[name] = str(dst)
        return dst

    # an adapter cut short in every place a reader could fall back to
    trunc = copy_run("run_trunc")
    for weights in trunc.rglob("adapters.safetensors"):
        weights.write_bytes(weights.read_bytes()[:100])
    garbage = copy_run("run_garbage")
    for weights in garbage.rglob("adapters.safetensors"):
        weights.write_bytes(b"this is not a safetensors file, it is text" * 4)
    badconfig = copy_run("run_badconfig")
    for cfg_file in badconfig.rglob("adapter_config.json"):
        cfg_file.write_text('{"num_layers": ')
    nonutf8 = copy_run("run_nonutf8_config")
    (nonutf8 / "config.yaml").write_bytes(b"model:\n  path: caf\xe9\n")
    badevents = copy_run("run_bad_events")
    lines = (run / "events.jsonl").read_bytes().splitlines(keepends=True)
    (badevents / "events.jsonl").write_bytes(lines[0] + b"{garbage\n" + b"".join(lines[1:]))
    latin = copy_run("run_latin1_events")
    (latin / "events.jsonl").write_bytes(lines[0] + b'{"type": "note", "text": "caf\xe9"}\n')
    # a run whose trainer was killed: run_start with a pid that is gone, no run_end
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    killed = copy_run("run_killed")
    start = json.loads(lines[0])
    assert start["type"] == "run_start"
    start["pid"] = int(dead.stdout)
    (killed / "events.jsonl").write_text(json.dumps(start) + "\n")
    unstarted = root / "run_unstarted"
    unstarted.mkdir()
    (unstarted / "events.jsonl").write_text("")
    w["run_unstarted"] = str(unstarted)
    nothing = root / "not_a_run"
    nothing.mkdir()
    (nothing / "notes.txt").write_text("hello\n")
    w["not_a_run"] = str(nothing)
    w["empty_dir"] = str(root / "empty_dir")
    (root / "empty_dir").mkdir()
    w["file"] = str(root / "not_a_run" / "notes.txt")

    # models: damaged weights, a damaged config, a fake GGUF, an empty folder
    model_trunc = root / "model_trunc"
    shutil.copytree(tiny_model, model_trunc)
    weights = next(model_trunc.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    w["model_trunc"] = str(model_trunc)
    model_badcfg = root / "model_badcfg"
    shutil.copytree(tiny_model, model_badcfg)
    (model_badcfg / "config.json").write_bytes(b"\xff\xfe{")
    w["model_badcfg"] = str(model_badcfg)
    (root / "fake.gguf").write_text("not a gguf")
    w["fake_gguf"] = str(root / "fake.gguf")

    # config files
    configs = {
        "cfg_list": "- train\n- game\n",
        "cfg_scalar": "5\n",
        "cfg_section_int": "train: 5\n",
        "cfg_section_list": "game: [1, 2]\n",
        "cfg_typo": "train:\n  learning_rat: 0.1\n",
        "cfg_section_typo": "trian:\n  seed: 1\n",
        "cfg_yaml": "train: [oops\n",
        "cfg_tab": "train:\n\tseed: 1\n",
        "cfg_inf": "train:\n  learning_rate: .inf\n",
        "cfg_nan": "train:\n  beta: .nan\n",
        "cfg_seed": "train:\n  seed: -5\n",
        "cfg_huge": "game:\n  num_queries: 100000000\n",
        "cfg_both": "game:\n  challenger_max_tokens: 8\n  query_max_tokens: 8\n",
        "cfg_str_int": "game:\n  group_size: four\n",
        "cfg_bool": "reward:\n  normalize: 3\n",
        "cfg_int_key": "1: 2\n",
        "cfg_reward_fn": "reward:\n  source: python\n  function: os.path:join\n",
    }
    for name, text in configs.items():
        (root / f"{name}.yaml").write_text(text)
        w[name] = str(root / f"{name}.yaml")
    (root / "cfg_latin1.yaml").write_bytes(b"game:\n  task: caf\xe9\n")
    w["cfg_latin1"] = str(root / "cfg_latin1.yaml")
    (root / "cfg_binary.yaml").write_bytes(bytes(range(256)))
    w["cfg_binary"] = str(root / "cfg_binary.yaml")

    # eval prompt files
    prompts = {"prompts_empty": "\n\n", "prompts_badjson": '{"prompt": "a"}\n{oops\n',
               "prompts_noprompt": '{"text": "a"}\n', "prompts_ok": "What is 2 + 2?\n"}  # fmt: skip
    for name, text in prompts.items():
        suffix = ".txt" if name in ("prompts_empty", "prompts_ok") else ".jsonl"
        (root / f"{name}{suffix}").write_text(text)
        w[name] = str(root / f"{name}{suffix}")
    (root / "prompts_latin1.txt").write_bytes(b"Quelle est la capitale? caf\xe9\n")
    w["prompts_latin1"] = str(root / "prompts_latin1.txt")
    return w


def listing(*folders: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                st = path.lstat()
                out[str(path)] = (st.st_size, st.st_mtime_ns if path.is_file() else 0)
    return out


def check_one_line(code: int, err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, f"exit code {code}: {err[-3000:]}"
    assert len(lines) == 1, f"{len(lines)} stderr lines: {err[-3000:]}"
    assert lines[0].startswith("lsp-mlx: error: "), lines[0]
    assert "Traceback" not in err
    assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"


# (id, argv with {placeholders}, what the one line must say)
CASES: list[tuple[str, str, str]] = [
    # ---------------------------------------------------------------- top level
    ("no-command", "", "no command given"),
    ("unknown-command", "trian", "invalid choice: 'trian'"),
    ("unknown-global-flag", "--colour train", "unrecognized arguments"),
    # ---------------------------------------------------------------- train: flags
    ("train-unknown-flag", "train --config {tiny} --itertions 3", "unrecognized arguments"),
    ("train-iterations-text", "train --iterations three", "invalid int value"),
    ("train-iterations-zero", "train --config {tiny} --model {model} --iterations 0 --run-dir {case}/r", "train.iterations must be in"),
    ("train-iterations-negative", "train --config {tiny} --iterations -4 --run-dir {case}/r", "train.iterations must be in"),
    ("train-seed-negative", "train --config {tiny} --seed -1 --run-dir {case}/r", "train.seed must be in 0..4294967295"),
    ("train-seed-huge", "train --config {tiny} --seed 100000000000000000000000 --run-dir {case}/r", "train.seed must be in"),
    ("train-seed-float", "train --seed 1.5", "invalid int value"),
    ("train-backend-unknown", "train --backend jax", "invalid choice: 'jax'"),
    ("train-run-dir-empty", "train --config {tiny} --model {model} --run-dir=", "train.run_dir is empty"),
    ("train-run-dir-blank", "train --config {tiny} --model {model} '--run-dir=   '", "train.run_dir is empty"),
    ("train-set-no-equals", "train --set train.seed", "needs a key and a value"),
    ("train-set-no-key", "train --set =3", "needs a key and a value"),
    ("train-set-no-dot", "train --set seed=3", "must look like section.key=value"),
    ("train-set-unknown-section", "train --set gmae.name=lsp", "did you mean 'game'"),
    ("train-set-unknown-key", "train --set game.num_querys=3", "did you mean 'num_queries'"),
    ("train-set-deep-key", "train --set train.seed.x=3", "unknown config key"),
    ("train-set-section-scalar", "train --set train=3", "must look like section.key=value"),
    ("train-config-missing", "train --config {root}/missing.yaml", "not found"),
    ("train-config-folder", "train --config {root}", "is a folder"),
    ("train-config-empty-path", "train --config=", "--config is empty"),
    ("train-config-list", "train --config {cfg_list}", "must hold a mapping of sections"),
    ("train-config-scalar", "train --config {cfg_scalar}", "must hold a mapping of sections"),
    ("train-config-section-int", "train --config {cfg_section_int}", "config section 'train' must be a mapping"),
    ("train-config-section-int-with-flag", "train --config {cfg_section_int} --seed 3", "config section 'train' must be a mapping"),
    ("train-config-section-int-with-set", "train --config {cfg_section_int} --set train.seed=3", "config section 'train' must be a mapping"),
    ("train-config-section-list", "train --config {cfg_section_list}", "config section 'game' must be a mapping"),
    ("train-config-typo", "train --config {cfg_typo}", "did you mean 'learning_rate'"),
    ("train-config-section-typo", "train --config {cfg_section_typo}", "did you mean 'train'"),
    ("train-config-yaml", "train --config {cfg_yaml}", "not valid YAML"),
    ("train-config-tab", "train --config {cfg_tab}", "not valid YAML"),
    ("train-config-device", "train --config /dev/null", "is not a regular file"),
    ("train-config-latin1", "train --config {cfg_latin1}", "not UTF-8"),
    ("train-config-binary", "train --config {cfg_binary}", "not UTF-8"),
    ("train-config-inf", "train --config {cfg_inf}", "train.learning_rate must be a finite number"),
    ("train-config-nan", "train --config {cfg_nan}", "train.beta must be a finite number"),
    ("train-config-seed", "train --config {cfg_seed}", "train.seed must be in"),
    ("train-config-huge", "train --config {cfg_huge}", "game.num_queries (N) must be in 1..4096"),
    ("train-config-old-and-new-key", "train --config {cfg_both}", "keep only game.query_max_tokens"),
    ("train-config-str-int", "train --config {cfg_str_int}", "game.group_size must be an integer"),
    ("train-config-bool", "train --config {cfg_bool}", "reward.normalize must be true or false"),
    ("train-config-int-key", "train --config {cfg_int_key}", "unknown config section 1"),
    ("train-config-reward-fn", "train --config {cfg_reward_fn} --run-dir {case}/r", "'os.path:join' has the signature"),
    # ---------------------------------------------------------------- train: --set values
    ("set-lr-inf", "train --set train.learning_rate=.inf", "finite number"),
    ("set-lr-inf-word", "train --set train.learning_rate=inf", "finite number"),
    ("set-lr-nan", "train --set train.learning_rate=.nan", "finite number"),
    ("set-lr-nan-word", "train --set train.learning_rate=NaN", "finite number"),
    ("set-lr-zero", "train --set train.learning_rate=0", "train.learning_rate must be in (0, 1]"),
    ("set-lr-negative", "train --set train.learning_rate=-1e-4", "train.learning_rate must be in (0, 1]"),
    ("set-lr-huge", "train --set train.learning_rate=5e3", "train.learning_rate must be in (0, 1]"),
    ("set-lr-text", "train --set train.learning_rate=fast", "train.learning_rate must be a number"),
    ("set-lr-list", "train --set train.learning_rate=[1]", "train.learning_rate must be a number"),
    ("set-beta-inf", "train --set train.beta=.inf", "train.beta must be a finite number"),
    ("set-beta-negative", "train --set train.beta=-0.1", "train.beta must be >= 0"),
    ("set-weight-decay-negative", "train --set train.weight_decay=-1", "train.weight_decay must be >= 0"),
    ("set-grad-norm-negative", "train --set train.max_grad_norm=-1", "train.max_grad_norm must be >= 0"),
    ("set-grad-norm-inf", "train --set train.max_grad_norm=.inf", "finite number"),
    ("set-micro-batch-zero", "train --set train.micro_batch_size=0", "train.micro_batch_size must be in"),
    ("set-checkpoint-every-negative", "train --set train.checkpoint_every=-1", "train.checkpoint_every must be >= 0"),
    ("set-keep-negative", "train --set train.keep_checkpoints=-2", "train.keep_checkpoints must be >= 0"),
    ("set-print-games-negative", "train --set train.print_games=-1", "train.print_games must be >= 0"),
    ("set-kl-estimator", "train --set train.kl_estimator=k2", "train.kl_estimator must be k1 or k3"),
    ("set-backend", "train --set train.backend=jax", "unknown backend 'jax'"),
    ("set-seed-negative", "train --set train.seed=-1", "train.seed must be in"),
    ("set-seed-2-32", "train --set train.seed=4294967296", "train.seed must be in"),
    ("set-seed-float", "train --set train.seed=1.5", "train.seed must be an integer"),
    ("set-seed-bool", "train --set train.seed=true", "train.seed must be an integer"),
    ("set-iterations-huge", "train --set train.iterations=10000000000", "train.iterations must be in"),
    ("set-report-to-unknown", "train --set train.report_to=mlflow", "unknown tracker 'mlflow'"),
    ("set-report-to-twice", "train --set train.report_to=[wandb,wandb]", "names a tracker twice"),
    ("set-report-to-none-and-more", "train --set train.report_to=[none,wandb]", "unknown tracker 'none'"),
    ("set-tracker-project-empty", "train --set \"train.tracker_project=''\"", "train.tracker_project is empty"),
    ("set-run-name-empty", "train --set \"train.run_name=''\"", "train.run_name is empty"),
    ("set-num-queries-zero", "train --set game.num_queries=0", "game.num_queries (N) must be in"),
    ("set-num-queries-huge", "train --set game.num_queries=100000000", "game.num_queries (N) must be in 1..4096"),
    ("set-group-size-one", "train --set game.group_size=1", "game.group_size (G) must be in 2..1024"),
    ("set-group-size-huge", "train --set game.group_size=100000", "game.group_size (G) must be in"),
    ("set-answers-per-iteration", "train --set game.num_queries=4096 --set game.group_size=1024", "answers per iteration"),
    ("set-query-tokens-zero", "train --set game.query_max_tokens=0", "game.query_max_tokens must be in"),
    ("set-answer-tokens-huge", "train --set game.answer_max_tokens=1000000000", "game.answer_max_tokens must be in"),
    ("set-old-key-bad-value", "train --set game.solver_max_tokens=0", "game.answer_max_tokens must be in"),
    ("set-old-and-new-key", "train --set game.alpha_challenger=1 --set game.query_weight=1", "keep only game.query_weight"),
    ("set-query-weight-negative", "train --set game.query_weight=-1", "game.query_weight must be >= 0"),
    ("set-temperature-negative", "train --set game.temperature=-1", "game.temperature must be in [0, 10]"),
    ("set-temperature-nan", "train --set game.temperature=.nan", "finite number"),
    ("set-temperature-huge", "train --set game.temperature=1e6", "game.temperature must be in [0, 10]"),
    ("set-top-p-zero", "train --set game.top_p=0", "game.top_p must be in (0, 1]"),
    ("set-top-p-above-one", "train --set game.top_p=1.5", "game.top_p must be in (0, 1]"),
    ("set-game-unknown", "train --set game.name=chess", "unknown game 'chess'"),
    ("set-game-number", "train --set game.name=5", "game.name must be a string"),
    ("set-judge-with-lsp", "train --set reward.source=judge", "use game lsp-zero with the judge"),
    ("set-reward-source", "train --set reward.source=oracle", "unknown reward source 'oracle'"),
    ("set-reward-model-empty", "train --set reward.source=reward_model", "reward.reward_model is empty"),
    ("set-reward-fn-no-colon", "train --set reward.function=os.path.join", "set reward.function to 'package.module:function'"),
    ("set-reward-fn-signature", "train --set reward.function=os.path:join --run-dir {case}/r", "has the signature"),
    ("set-reward-fn-one-arg", "train --set reward.function=os.path:basename", "has the signature"),
    ("set-reward-fn-not-callable", "train --set reward.function=os:sep", "has no function 'sep'"),
    ("set-reward-fn-missing-attr", "train --set reward.function=os.path:nope", "has no function 'nope'"),
    ("set-reward-fn-empty-module", "train --set reward.function=:quality", "must look like 'package.module:function'"),
    ("set-reward-fn-missing-module", "train --set reward.function=no_such_module_xyz:f", "cannot import reward module"),
    ("set-reward-fn-empty-attr", "train --set reward.function=os:", "reward.function must be a string"),
    ("set-judge-mode", "train --set reward.judge_mode=vibes", "unknown reward.judge_mode"),
    ("set-judge-tokens", "train --set reward.judge_max_tokens=4", "reward.judge_max_tokens must be in 8"),
    ("set-judge-temperature", "train --set reward.judge_temperature=-0.5", "reward.judge_temperature must be in"),
    ("set-lora-rank-zero", "train --set lora.rank=0", "lora.rank must be in"),
    ("set-lora-rank-huge", "train --set lora.rank=100000", "lora.rank must be in"),
    ("set-lora-scale-zero", "train --set lora.scale=0", "lora.scale must be > 0"),
    ("set-lora-scale-inf", "train --set lora.scale=.inf", "finite number"),
    ("set-lora-dropout-one", "train --set lora.dropout=1", "lora.dropout must be in [0, 1)"),
    ("set-lora-layers-zero", "train --set lora.num_layers=0", "lora.num_layers must be -1"),
    ("set-lora-keys-empty", "train --set lora.keys=[]", "lora.keys must list module paths"),
    ("set-lora-keys-string", "train --set lora.keys=q_proj", "lora.keys must be a list"),
    ("set-model-path-empty", "train --set \"model.path=''\"", "model.path is empty"),
    ("set-model-path-number", "train --set model.path=3", "model.path must be a string"),
    ("set-sqlm-verifier", "train --set sqlm.verifier=chess", "sqlm.verifier must be arithmetic or code"),
    ("set-sqlm-isolation", "train --set sqlm.sandbox_isolation=docker", "sqlm.sandbox_isolation must be os or python"),
    ("set-sqlm-timeout-zero", "train --set sqlm.sandbox_timeout=0", "sqlm.sandbox_timeout must be in"),
    ("set-sqlm-memory-small", "train --set sqlm.sandbox_memory_mb=1", "sqlm.sandbox_memory_mb must be in 64"),
    ("set-sqlm-proposer-every", "train --set sqlm.proposer_every=0", "sqlm.proposer_every must be in"),
    ("set-sqlm-references", "train --set sqlm.references=-1", "sqlm.references must be in"),
    ("set-sqlm-duplicate", "train --set sqlm.duplicate_threshold=0", "sqlm.duplicate_threshold must be in (0, 1]"),
    ("set-sqlm-exact-code", "train --set sqlm.verifier=code --set sqlm.solver_reward=exact", "needs sqlm.verifier arithmetic"),
    ("set-spin-beta-zero", "train --set spin.beta=0", "spin.beta (lambda) must be > 0"),
    ("set-spin-pairs-zero", "train --set spin.pairs_per_iteration=0", "spin.pairs_per_iteration must be in"),
    ("set-spin-data-empty", "train --set \"spin.data=''\"", "spin.data is empty"),
    # ---------------------------------------------------------------- train: models and runs
    ("train-model-missing", "train --config {tiny} --model {root}/nope --run-dir {case}/r", "nope"),
    ("train-model-text-file", "train --config {tiny} --model {file} --run-dir {case}/r", "not a GGUF file or model folder"),
    ("train-model-fake-gguf", "train --config {tiny} --model {fake_gguf} --run-dir {case}/r", "GGUF"),
    ("train-model-gguf-missing", "train --config {tiny} --model {root}/x.gguf --run-dir {case}/r", "GGUF file not found"),
    ("train-model-empty-folder", "train --config {tiny} --model {empty_dir} --run-dir {case}/r", "not an mlx-lm/HF model folder"),
    ("train-model-truncated", "train --config {tiny} --model {model_trunc} --run-dir {case}/r", "model.safetensors"),
    ("train-model-bad-config", "train --config {tiny} --model {model_badcfg} --run-dir {case}/r", "config.json"),
    ("train-lora-layers-above-blocks", "train --config {tiny} --model {model} --run-dir {case}/r --set lora.num_layers=99", "the model has 2 blocks"),
    ("train-lora-keys-unknown", "train --config {tiny} --model {model} --run-dir {case}/r --set lora.keys=[self_attn.nope]", "matched no layer"),
    ("train-reward-model-missing", "train --config {tiny} --model {model} --run-dir {case}/r --set reward.source=reward_model --set reward.reward_model={root}/rm", "reward model"),
    ("train-reward-model-no-head", "train --config {tiny} --model {model} --run-dir {case}/r --set reward.source=reward_model --set reward.reward_model={model}", "no score head"),
    ("train-spin-beta", "train --config {tiny} --model {model} --run-dir {case}/r --set game.name=spin", "game spin needs train.beta: 0"),
    ("train-spin-data-missing", "train --config {tiny} --model {model} --run-dir {case}/r --set game.name=spin --set train.beta=0 --set spin.data={root}/pairs.jsonl", "not found"),
    ("train-spin-data-damaged", "train --config {tiny} --model {model} --run-dir {case}/r --set game.name=spin --set train.beta=0 --set spin.data={prompts_badjson}", "needs non-empty 'prompt' and 'response'"),
    ("train-spin-data-latin1", "train --config {tiny} --model {model} --run-dir {case}/r --set game.name=spin --set train.beta=0 --set spin.data={prompts_latin1}", "not UTF-8"),
    ("train-reward-fn-private-helper", "train --set reward.function=lsp_mlx.rewards.heuristics:_words", "has the signature"),
    ("train-run-exists", "train --config {tiny} --model {model} --run-dir {run}", "already holds a run"),
    ("train-resume-nothing", "train --config {tiny} --model {model} --run-dir {case}/r --resume", "holds no run"),
    ("train-resume-other-config", "train --config {tiny} --model {model} --run-dir {run} --resume --set train.beta=0.5", "different config"),
    ("train-run-dir-under-file", "train --config {tiny} --model {model} --run-dir {file}/r", "not writable"),
    ("train-report-to-unknown", "train --config {tiny} --report-to mlflow", "unknown tracker 'mlflow'"),
    ("train-distributed-zero", "train --config {tiny} --distributed 0", "--distributed"),
    ("train-distributed-negative", "train --config {tiny} --distributed -2", "--distributed"),
    # ---------------------------------------------------------------- tui
    ("tui-config-missing", "tui --config {root}/missing.yaml", "not found"),
    ("tui-attach-empty", "tui --attach ''", "--attach is empty"),
    ("tui-attach-not-a-run", "tui --attach {root}", "holds no run"),
    ("tui-config-latin1", "tui --config {cfg_latin1}", "not UTF-8"),
    ("tui-set-bad", "tui --config {tiny} --set game.group_size=1", "game.group_size (G) must be in"),
    ("tui-seed-negative", "tui --config {tiny} --seed -1", "train.seed must be in"),
    ("tui-lr-inf", "tui --config {tiny} --set train.learning_rate=.inf", "finite number"),
    ("tui-attach-missing", "tui --attach {root}/missing-run", "missing-run"),
    ("tui-attach-file", "tui --attach {file}", "notes.txt"),
    ("tui-attach-with-train-flags", "tui --attach {run} --config {tiny}", "drop the training flags"),
    ("tui-run-exists", "tui --config {tiny} --model {model} --run-dir {run}", "already holds a run"),
    ("tui-report-to-unknown", "tui --config {tiny} --report-to mlflow", "unknown tracker 'mlflow'"),
    ("tui-iterations-zero", "tui --config {tiny} --iterations 0", "train.iterations must be in"),
    ("tui-screenshot-without-attach", "tui --screenshot {case}/x.svg", "--screenshot needs --attach"),
    ("tui-screenshot-unwritable", "tui --attach {run} --screenshot " + UNWRITABLE + "/x.svg", "--screenshot"),
    ("tui-stop-timeout-negative", "tui --config {tiny} --model {model} --run-dir {case}/r --stop-timeout -1", "--stop-timeout"),
    ("tui-size", "tui --attach {run} --screenshot {case}/x.svg --size big", "--size"),
    ("tui-unknown-flag", "tui --atach {run}", "unrecognized arguments"),
    # ---------------------------------------------------------------- export
    ("export-no-adapter", "export --out {case}/e", "pass --adapter PATH"),
    ("export-no-out", "export --adapter {run}", "--out"),
    ("export-two-adapters", "export {run} --adapter {run_trunc} --out {case}/e", "two adapters given"),
    ("export-adapter-missing", "export --adapter {root}/missing --out {case}/e", "does not exist"),
    ("export-adapter-empty", "export --adapter= --out {case}/e", "--adapter is empty"),
    ("export-adapter-file", "export --adapter {file} --out {case}/e", "is a file"),
    ("export-adapter-empty-folder", "export --adapter {empty_dir} --out {case}/e", "neither a run folder"),
    ("export-positional-missing", "export {root}/missing --out {case}/e", "does not exist"),
    ("export-truncated-weights", "export --adapter {run_trunc} --out {case}/e", "is truncated"),
    ("export-garbage-weights", "export --adapter {run_garbage} --out {case}/e", "adapters.safetensors"),
    ("export-truncated-checkpoint", "export --adapter {run_trunc}/checkpoints/iter-000001 --out {case}/e", "is truncated"),
    ("export-bad-adapter-config", "export --adapter {run_badconfig} --out {case}/e", "adapter_config.json"),
    ("export-latin1-run-config", "export --adapter {run_nonutf8_config} --out {case}/e", "not UTF-8"),
    ("export-bad-events", "export --adapter {run_bad_events} --out {case}/e", "damaged line 2"),
    ("export-latin1-events", "export --adapter {run_latin1_events} --out {case}/e", "not UTF-8"),
    ("export-checkpoint-negative", "export --adapter {run} --checkpoint -1 --out {case}/e", "--checkpoint must be >= 0"),
    ("export-checkpoint-missing", "export --adapter {run} --checkpoint 99 --out {case}/e", "has no checkpoint 99"),
    ("export-checkpoint-disagrees", "export --adapter {run}/checkpoints/iter-000001 --checkpoint 2 --out {case}/e", "disagrees"),
    ("export-checkpoint-text", "export --adapter {run} --checkpoint last --out {case}/e", "invalid int value"),
    ("export-out-file", "export --adapter {run} --out {file}", "is a file"),
    ("export-out-under-file", "export --adapter {run} --out {file}/e", "is a file, not a folder"),
    ("export-out-unwritable", "export --adapter {run} --out " + UNWRITABLE, "cannot be written"),
    ("export-out-empty", "export --adapter {run} --out=", "--out is empty"),
    ("export-out-inside-source", "export --adapter {run} --out {run}/export", "inside the source"),
    ("export-out-foreign", "export --adapter {run} --out {not_a_run}", "is not an lsp-mlx export"),
    ("export-private-alone", "export --adapter {run} --out {case}/e --private", "--private only applies"),
    ("export-dry-run-alone", "export --adapter {run} --out {case}/e --dry-run", "--dry-run lists"),
    ("export-bad-repo-id", "export --adapter {run} --out {case}/e --push-to-hub 'bad id' --dry-run", "is not a valid Hub repo id"),
    ("export-bad-repo-id-slashes", "export --adapter {run} --out {case}/e --push-to-hub a/b/c", "is not a valid Hub repo id"),
    ("export-wrong-base", "export --adapter {run} --out {case}/e --model {other_model}", "does not fit this base model"),
    ("export-base-model-not-hub-id", "export --adapter {run} --out {case}/e --base-model 'not a hub id'", "is not a Hub id"),
    ("export-model-missing", "export --adapter {run} --out {case}/e --model {root}/nope", "nope"),
    # ---------------------------------------------------------------- chat
    ("chat-no-adapter", "chat", "--adapter"),
    ("chat-adapter-missing", "chat --adapter {root}/missing", "does not exist"),
    ("chat-adapter-empty", "chat --adapter=", "--adapter is empty"),
    ("chat-adapter-file", "chat --adapter {file}", "is a file"),
    ("chat-adapter-not-a-run", "chat --adapter {not_a_run}", "neither a run folder"),
    ("chat-truncated-weights", "chat --adapter {run_trunc}", "is truncated"),
    ("chat-garbage-weights", "chat --adapter {run_garbage}", "adapters.safetensors"),
    ("chat-bad-adapter-config", "chat --adapter {run_badconfig}", "adapter_config.json"),
    ("chat-latin1-run-config", "chat --adapter {run_nonutf8_config}", "not UTF-8"),
    ("chat-max-tokens-zero", "chat --adapter {run} --max-tokens 0", "--max-tokens must be in"),
    ("chat-temp-negative", "chat --adapter {run} --temp -1", "--temp must be in [0, 10]"),
    ("chat-temp-nan", "chat --adapter {run} --temp nan", "--temp must be in [0, 10]"),
    ("chat-top-p-zero", "chat --adapter {run} --top-p 0", "--top-p must be in (0, 1]"),
    ("chat-seed-negative", "chat --adapter {run} --seed -1", "--seed must be in"),
    ("chat-seed-huge", "chat --adapter {run} --seed 100000000000000000000000", "--seed must be in"),
    ("chat-checkpoint-missing", "chat --adapter {run} --checkpoint 7", "has no checkpoint 7"),
    ("chat-model-missing", "chat --adapter {run} --model {root}/nope", "nope"),
    ("chat-wrong-base", "chat --adapter {run} --model {other_model}", "does not fit"),
    # ---------------------------------------------------------------- generate
    ("generate-no-prompt", "generate --adapter {run}", "--prompt"),
    ("generate-empty-prompt", "generate --adapter {run} --prompt '  '", "the prompt is empty"),
    ("generate-raw-system", "generate --adapter {run} --prompt hi --raw --system x", "--system needs the chat template"),
    ("generate-seed-negative", "generate --adapter {run} --prompt hi --seed -1", "--seed must be in"),
    ("generate-seed-huge", "generate --adapter {run} --prompt hi --seed 4294967296", "--seed must be in"),
    ("generate-top-p-above-one", "generate --adapter {run} --prompt hi --top-p 1.5", "--top-p must be in (0, 1]"),
    ("generate-max-tokens-text", "generate --adapter {run} --prompt hi --max-tokens many", "invalid int value"),
    ("generate-prompt-not-utf8", "generate --adapter {run} --prompt caf\udce9", "the prompt is not UTF-8"),
    ("generate-system-not-utf8", "generate --adapter {run} --prompt hi --system caf\udce9", "--system is not UTF-8"),
    ("generate-adapter-missing", "generate --adapter {root}/missing --prompt hi", "does not exist"),
    ("generate-truncated-weights", "generate --adapter {run_trunc} --prompt hi", "is truncated"),
    ("generate-checkpoint-negative", "generate --adapter {run} --prompt hi --checkpoint -3", "--checkpoint must be >= 0"),
    ("generate-model-truncated", "generate --adapter {run} --prompt hi --model {model_trunc}", "model.safetensors"),
    ("generate-wrong-base", "generate --adapter {run} --prompt hi --model {other_model}", "does not fit"),
    # ---------------------------------------------------------------- eval
    ("eval-batch-size-zero", "eval --model {model} --batch-size 0", "--batch-size must be in 1..4096"),
    ("eval-batch-size-negative", "eval --model {model} --batch-size -5", "--batch-size must be in"),
    ("eval-levels-empty", "eval --model {model} --levels=", "--levels is empty"),
    ("eval-levels-commas", "eval --model {model} --levels ,,", "--levels is empty"),
    ("eval-levels-unknown", "eval --model {model} --levels add9", "unknown level 'add9'"),
    ("eval-levels-twice", "eval --model {model} --levels add1,add2,add1", "names 'add1' twice"),
    ("eval-per-level-zero", "eval --model {model} --per-level 0", "--per-level must be in"),
    ("eval-per-level-huge", "eval --model {model} --per-level 1000000000", "--per-level must be in"),
    ("eval-max-tokens-zero", "eval --model {model} --max-tokens 0", "--max-tokens must be in"),
    ("eval-seed-negative", "eval --model {model} --seed -1", "--seed must be in"),
    ("eval-output-folder", "eval --model {model} --output {root}", "is a folder"),
    ("eval-output-under-file", "eval --model {model} --output {file}/x.json", "is a file, not a folder"),
    ("eval-output-unwritable", "eval --model {model} --output " + UNWRITABLE + "/x.json", "cannot be written"),
    ("eval-output-empty", "eval --model {model} --output=", "--output is empty"),
    ("eval-output-device", "eval --model {model} --output /dev/full", "is not a regular file"),
    ("eval-no-base-alone", "eval --model {model} --no-base", "--no-base needs --adapter"),
    ("eval-prompts-alone", "eval --model {model} --prompts {prompts_ok}", "also pass --adapter"),
    ("eval-nothing", "eval --model {model} --no-accuracy", "leaves nothing to measure"),
    ("eval-checkpoint-alone", "eval --model {model} --checkpoint 1", "also pass --adapter"),
    ("eval-judge-rm-no-model", "eval --adapter {run} --prompts {prompts_ok} --judge reward_model", "--judge reward_model needs"),
    ("eval-reward-model-missing", "eval --adapter {run} --prompts {prompts_ok} --judge reward_model --reward-model {root}/rm", "--reward-model"),
    ("eval-reward-model-no-head", "eval --adapter {run} --prompts {prompts_ok} --judge reward_model --reward-model {model} --no-accuracy", "no score head"),
    ("eval-judge-python-no-fn", "eval --adapter {run} --prompts {prompts_ok} --judge python", "--judge python needs"),
    ("eval-judge-python-signature", "eval --adapter {run} --prompts {prompts_ok} --judge python --function os.path:join", "has the signature"),
    ("eval-judge-unknown", "eval --judge oracle", "invalid choice: 'oracle'"),
    ("eval-prompts-missing", "eval --adapter {run} --prompts {root}/nope.txt", "not found"),
    ("eval-prompts-folder", "eval --adapter {run} --prompts {root}", "is a folder"),
    ("eval-prompts-empty", "eval --adapter {run} --prompts {prompts_empty}", "holds no prompts"),
    ("eval-prompts-bad-json", "eval --adapter {run} --prompts {prompts_badjson}", "is not valid JSON"),
    ("eval-prompts-no-prompt-field", "eval --adapter {run} --prompts {prompts_noprompt}", "has no 'prompt' string"),
    ("eval-prompts-latin1", "eval --adapter {run} --prompts {prompts_latin1}", "not UTF-8"),
    ("eval-train-log-missing", "eval --model {model} --train-log {root}/nope", "--train-log: no events.jsonl"),
    ("eval-train-log-bad", "eval --model {model} --train-log {run_bad_events}", "damaged line 2"),
    ("eval-train-log-latin1", "eval --model {model} --train-log {run_latin1_events}/events.jsonl", "not UTF-8"),
    ("eval-adapter-missing", "eval --adapter {root}/missing", "does not exist"),
    ("eval-adapter-not-a-run", "eval --adapter {not_a_run}", "neither a run folder"),
    ("eval-truncated-weights", "eval --adapter {run_trunc}", "is truncated"),
    ("eval-garbage-weights", "eval --adapter {run_garbage}", "adapters.safetensors"),
    ("eval-bad-adapter-config", "eval --adapter {run_badconfig}", "adapter_config.json"),
    ("eval-checkpoint-missing", "eval --adapter {run} --checkpoint 42", "has no checkpoint 42"),
    ("eval-bad-events-of-run", "eval --adapter {run_bad_events}", "damaged line 2"),
    ("eval-model-missing", "eval --model {root}/nope", "nope"),
    ("eval-model-truncated", "eval --model {model_trunc}", "model.safetensors"),
    ("eval-wrong-base", "eval --adapter {run} --model {other_model} --per-level 1 --levels add1", "does not fit"),
    # ---------------------------------------------------------------- control
    ("control-missing-run", "control {root}/missing pause", "is not a run folder"),
    ("control-not-a-run", "control {not_a_run} pause", "is not a run folder"),
    ("control-finished-run", "control {run} pause", "no trainer is running"),
    ("control-finished-run-stop", "control {run} stop", "no trainer is running"),
    ("control-killed-run", "control {run_killed} checkpoint", "is gone"),
    ("control-unstarted-run", "control {run_unstarted} pause", "has not started"),
    ("control-bad-events", "control {run_bad_events} pause", "damaged line 2"),
    ("control-latin1-events", "control {run_latin1_events} resume", "not UTF-8"),
    ("control-unknown-command", "control {run} explode", "invalid choice: 'explode'"),
    ("control-no-command", "control {run}", "required"),
    # ---------------------------------------------------------------- launch
    ("launch-no-config", "launch", "--config"),
    ("launch-processes-zero", "launch -n 0 -- --config {tiny}", "0"),
    ("launch-processes-text", "launch -n two -- --config {tiny}", "invalid int value"),
    ("launch-bad-set", "launch -n 2 -- --config {tiny} --set game.group_size=1", "game.group_size (G) must be in"),
    ("launch-processes-negative", "launch -n -1 -- --config {tiny}", "-n must be >= 1"),
    ("launch-too-few-queries", "launch -n 2 -- --config {tiny} --set game.num_queries=1", "every rank gets a query"),
    ("launch-run-exists", "launch -n 2 -- --config {tiny} --model {model} --run-dir {run}", "already holds a run"),
    ("launch-hostfile-missing", "launch -n 2 --hostfile {root}/hosts.json -- --config {tiny} --run-dir {case}/r", "hosts.json"),
    ("launch-config-missing", "launch -n 2 -- --config {root}/missing.yaml", "not found"),
    ("launch-port-zero", "launch -n 2 --port 0 -- --config {tiny} --run-dir {case}/r", "--port 0"),
    ("launch-port-too-high", "launch -n 2 --port 65535 -- --config {tiny} --run-dir {case}/r", "1..65534"),
    ("launch-hostfile-not-json", "launch -n 2 --hostfile {tiny} -- --config {tiny} --run-dir {case}/r", "not valid JSON"),
    # ---------------------------------------------------------------- report
    ("report-no-to", "report {run}", "--to"),
    ("report-missing-run", "report {root}/missing --to tensorboard", "missing"),
    ("report-not-a-run", "report {not_a_run} --to tensorboard", "not_a_run"),
    ("report-unknown-tracker", "report {run} --to mlflow", "mlflow"),
    ("report-project-empty", "report {run} --to tensorboard --project ''", "--project"),
    ("report-name-empty", "report {run} --to tensorboard --name ''", "--name"),
    ("report-bad-events", "report {run_bad_events} --to tensorboard", "events.jsonl"),
]  # fmt: skip

# Run as real processes with a timeout: if not caught, they would start the dashboard.
OPENS_DASHBOARD_IF_UNCAUGHT = {
    "tui-stop-timeout-negative",
    "tui-screenshot-unwritable",
    "tui-attach-empty",
    "tui-attach-not-a-run",
}

# Cases that also run as real processes: the entry point, imports and exit status end to end.
SUBPROCESS = [
    "no-command", "train-seed-negative", "train-config-latin1", "set-lr-inf", "set-reward-fn-signature",
    "export-truncated-weights", "export-out-unwritable", "generate-seed-negative",
    "eval-batch-size-zero", "eval-output-folder", "control-finished-run", "chat-adapter-missing",
]  # fmt: skip


def test_the_table_is_large_and_unique() -> None:
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 150
    assert set(SUBPROCESS) <= set(ids)
    commands = {case[1].split()[0] for case in CASES if case[1]}
    assert commands >= {
        "train",
        "tui",
        "export",
        "chat",
        "generate",
        "eval",
        "control",
        "launch",
        "report",
    }


def _run_guarded(args: list[str], cwd: Path, timeout: float) -> tuple[int, str]:
    """A real process in its own session, killed with everything it started on timeout."""
    import signal

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lsp_mlx", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(
            f"still running after {timeout:.0f}s: it started work instead of a one-line error"
        )
    return proc.returncode, err


def _argv(template: str, world: dict[str, str], case: Path) -> list[str]:
    import shlex

    return [part.format(**world, case=case) for part in shlex.split(template)]


# Cases whose fix lies in another module and has not landed yet (none at present).
PENDING: dict[str, str] = {}


def _params() -> list:
    marks = {k: pytest.mark.xfail(strict=False, reason=v) for k, v in PENDING.items()}
    return [pytest.param(*c, id=c[0], marks=marks.get(c[0], ())) for c in CASES]


@pytest.mark.parametrize(("case_id", "argv", "needle"), _params())
def test_bad_input(case_id, argv, needle, world, tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)  # default outputs (eval.json, runs/) would land here
    args = _argv(argv, world, tmp_path)
    before = listing(Path(world["root"]), tmp_path)
    if case_id in OPENS_DASHBOARD_IF_UNCAUGHT:
        # such a case, if it slipped through, would wait for keys forever in-process
        code, err = _run_guarded(args, tmp_path, timeout=30)
    else:
        code, err = main(args), capsys.readouterr().err
    check_one_line(code, err, needle)
    assert listing(Path(world["root"]), tmp_path) == before, (
        "a file was written, removed or changed"
    )


@pytest.mark.parametrize("case_id", SUBPROCESS)
def test_bad_input_in_a_real_process(case_id, world, tmp_path) -> None:  # noqa: ANN001
    _, argv, needle = next(c for c in CASES if c[0] == case_id)
    args = _argv(argv, world, tmp_path)
    before = listing(Path(world["root"]), tmp_path)
    proc = run_cli(*args, cwd=tmp_path, timeout=300)
    check_one_line(proc.returncode, proc.stderr, needle)
    assert listing(Path(world["root"]), tmp_path) == before
