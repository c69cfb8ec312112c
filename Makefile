# Two commands: `make book` and `make test`. Each sets up .venv on a fresh machine.
PYTHON ?= python3
VENV = .venv
VPY = $(VENV)/bin/python
STAMP = $(VENV)/.installed
# Optional: e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu for a CPU-only torch (used in CI).
TORCH_INDEX_URL ?=

.PHONY: setup test book clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch torchvision
	$(VPY) -m pip install -e '.[book,test]'
	touch $@

# The library tests, the notebooks through papermill and the browser (tests/), then every
# notebook through nbval with its default parameters (book/).
test: setup
	$(VPY) -m pytest tests book --nbval-lax

# -W turns Sphinx warnings into errors; --keep-going reports all of them before failing.
book: setup
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going

clean:
	rm -rf _build
