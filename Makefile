# The two commands of the README:
#   make demo   set up, then train LSP on the embedded SmolLM2-135M for a few minutes
#   make test   set up (with test tools and the PyTorch backend), then run the test suite
VENV ?= .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: demo test setup setup-test lint bench clean

demo: $(VENV)/.setup
	$(BIN)/lsp-mlx train --config configs/demo.yaml --run-dir $(RUN_DIR)

test: $(VENV)/.setup-test
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

setup: $(VENV)/.setup
setup-test: $(VENV)/.setup-test

$(VENV)/.setup: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

$(VENV)/.setup-test: $(VENV)/.setup
	bash scripts/setup.sh --test $(VENV)
	touch $@

lint: $(VENV)/.setup-test
	$(BIN)/ruff check lsp_mlx tui tests benchmarks examples

bench: $(VENV)/.setup-test
	$(BIN)/python benchmarks/rollout.py

clean:
	rm -rf $(VENV) runs exports
