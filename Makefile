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

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
