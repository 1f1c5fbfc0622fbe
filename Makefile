# Two entry points: `make demo` (set up + main job) and `make test` (set up + tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint format bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,ncnn]'
	$(BIN)/pip install -q --no-deps --target $(VENV)/oracles torchvision==0.28.0
	$(BIN)/pip install -q --no-deps --target $(VENV)/oracles segmentation_models_pytorch==0.6.0 timm==1.0.31 huggingface_hub==0.36.2
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/atrous demo

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# Two workers, one core each (tests/conftest.py); a file stays on one worker (its fixtures built once).
test: setup lint
	$(BIN)/python -m pytest -n 2 --dist loadfile

clean:
	rm -rf $(VENV) build dist *.egg-info
