# Two commands: `make book` and `make test`. Each sets up .venv on a fresh machine; `make test-fast` runs the
# library's tests alone (no notebooks, no browser, nothing marked slow) in under two minutes.
# `make lab` opens the chapters in JupyterLab (the same .venv, set up the same way).
PYTHON ?= python3
VENV = .venv
VPY = $(VENV)/bin/python
STAMP = $(VENV)/.installed
# Optional: e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu for a CPU-only torch (used in CI).
TORCH_INDEX_URL ?=

.PHONY: setup static test test-fast book lab format clean

setup: $(STAMP)

# The live figures' files (gitignored): onnxruntime-web from npm, offline from the lock file's packages,
# and the book's models exported to ONNX from the shipped weights.
ORT_DIST = book/_js/node_modules/onnxruntime-web/dist
ORT_FILES = ort.wasm.min.js ort-wasm-simd-threaded.wasm ort-wasm-simd-threaded.mjs
static: book/_static/ort/ort.wasm.min.js book/_static/live/book.json

book/_static/ort/ort.wasm.min.js: book/_js/package-lock.json
	cd book/_js && npm ci --no-audit --no-fund --ignore-scripts
	mkdir -p book/_static/ort
	cd $(ORT_DIST) && cp $(ORT_FILES) $(CURDIR)/book/_static/ort/
	touch $@

# Made from the whole library (book.json records the digest of its sources, export.source_digest).
book/_static/live/book.json: $(STAMP) $(shell find colddiff_lib -name '*.py') $(wildcard colddiff_lib/zoo/cards/*.json)
	$(VPY) -m colddiff_lib export --out book/_static/live

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch torchvision
	$(VPY) -m pip install -e '.[book,test]'
	touch $@

# The library tests, the notebooks through papermill and the browser (tests/), then every
# notebook through nbval with its default parameters (book/).
test: setup static
	$(VPY) -m pytest tests book --nbval-lax

# The library's tests alone, in under two minutes on a two-core CPU: no notebooks, no browser, and none of
# the tests marked slow (end-to-end runs: subprocesses, trainings, the ONNX export, interrupted runs).
FAST = -m "not slow" --ignore=tests/test_book.py --ignore=tests/test_browser.py --ignore=tests/test_solutions.py
test-fast: setup
	OMP_NUM_THREADS=$(or $(OMP_NUM_THREADS),1) $(VPY) -m pytest tests $(FAST)

# -W turns Sphinx warnings into errors; --keep-going reports all of them before failing.
book: setup static
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going

# The chapters in JupyterLab, from book/ (where they run); e.g. LAB_ARGS="--no-browser --port 8890".
LAB_ARGS ?=
lab: setup
	cd book && $(CURDIR)/$(VENV)/bin/jupyter lab $(LAB_ARGS)

# One formatter for the library, tests, benchmarks and the chapters' code cells (pyproject.toml's [tool.ruff]).
format: setup
	$(VENV)/bin/ruff format
	$(VENV)/bin/ruff check --select F,E9 --fix

clean:
	rm -rf _build book/_static/ort book/_static/live
