# The README's two commands: `make demo` and `make test`. Each sets up .venv when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-data

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch/torchvision pinned to the builds that install from this machine's disk
	$(BIN)/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The inner loop: everything but the tests marked slow (CI runs `make test`, all of them).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check vidfeat tests benchmarks scripts
	$(BIN)/ruff format --check vidfeat tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO)

bench: $(STAMP)
	$(BIN)/python benchmarks/store.py
	$(BIN)/python benchmarks/backbones.py
	$(BIN)/python benchmarks/preprocess.py
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/train.py

clean:
	rm -rf $(DEMO) .pytest_cache .mypy_cache .ruff_cache
