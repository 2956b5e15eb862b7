# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-fast lint bench completions

# -c constraints.txt: the tested torch/torchvision and tools; pyproject itself states ranges.
$(BIN)/learnkit: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

install: $(BIN)/learnkit

# Train on the built-in sample with 1cycle, then check the saved model the way a user would.
demo: install
	$(BIN)/learnkit fit-one-cycle sample:shapes --arch simple_cnn --size 32 --epochs 10 --lr 2e-2 --seed 0 --path runs/demo --exist-ok
	$(BIN)/learnkit validate sample:shapes --model last --path runs/demo --plots

# pytest exits 5 when it collects nothing; that is not a failure of the suite.
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc

# The suite without the tests marked slow (over ~10 s each: several processes, torchrun, fuzzing).
test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m 'not slow'; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m bench

completions: install
	$(BIN)/python -m learnkit.cli.completions completions
