# The two commands of the README:
#   make demo   set up, then play LSP-Zero on arithmetic with the embedded SmolLM2-135M for a few
#               minutes: in the dashboard when run in a terminal, headless otherwise (CI, pipes,
#               or HEADLESS=1); it ends with the commands to watch, chat with and export the run
#   make test   set up (with test tools, trackers and the PyTorch backend), check lint and format,
#               then run the test suite
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(shell date +%Y%m%d-%H%M%S)
RUN_DIR ?= runs/demo-$(DEMO_STAMP)
HEADLESS ?=

.PHONY: demo test setup setup-test lint bench clean

# train prints the next commands itself; after the dashboard they are printed here.
demo: $(VENV)/.setup
	@if [ -z "$(HEADLESS)" ] && [ -t 0 ] && [ -t 1 ]; then \
	  $(BIN)/lsp-mlx tui --config configs/demo.yaml --run-dir $(RUN_DIR) && \
	  printf 'next:\n  %s\n  %s\n  %s\n' \
	    "$(BIN)/lsp-mlx tui --attach $(RUN_DIR)" \
	    "$(BIN)/lsp-mlx chat --adapter $(RUN_DIR) --compare" \
	    "$(BIN)/lsp-mlx export --adapter $(RUN_DIR) --out exports/demo"; \
	else \
	  echo "$(BIN)/lsp-mlx train --config configs/demo.yaml --run-dir $(RUN_DIR)"; \
	  $(BIN)/lsp-mlx train --config configs/demo.yaml --run-dir $(RUN_DIR); \
	fi

test: lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

setup: $(VENV)/.setup
setup-test: $(VENV)/.setup-test

$(VENV)/.setup: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

$(VENV)/.setup-test: $(VENV)/.setup
	bash scripts/setup.sh --test $(VENV)
	touch $@

# ruff's settings (line length 100, rules) are in pyproject.toml; --check changes nothing.
lint: $(VENV)/.setup-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.setup-test
	$(BIN)/python benchmarks/iteration.py

clean:
	rm -rf $(VENV) runs exports
