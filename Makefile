# remsim-supervisor: build, test and demo.
#
# `make test` runs the whole suite twice: once against the newest libraries on
# PyPI and once against the versions OpenWrt 24.10 ships. Each library set has
# its own virtual environment under .venv/, created on first use.

PYTHON      ?= python3
VENV_NEWEST := .venv/newest
VENV_OWRT   := .venv/openwrt-24.10
PYTEST_ARGS ?=
.DEFAULT_GOAL := test

.PHONY: test test-newest test-openwrt venvs bootstrap userland demo ipk lint bench fuzz clean

# The demo's last part runs the supervisor under OpenWrt's procd, with the
# OpenWrt 24.10 libraries as the router's python3.
demo: bootstrap userland $(VENV_NEWEST)/.stamp $(VENV_OWRT)/.stamp
	$(VENV_NEWEST)/bin/python -m remsim_lab.demo

# Both library sets at once, one per core, with the lint (`make lint`) beside
# them; each log is printed whole at the end and any failure fails the target.
# The router tests (OpenWrt's own programs) run under the last set only.
test: bootstrap userland
	$(MAKE) --no-print-directory -j2 venvs $(LINT_STAMP)
	sh scripts/run-suites.sh --lint $(VENV_NEWEST) $(VENV_NEWEST) $(VENV_OWRT) -- $(PYTEST_ARGS)

test-newest: $(VENV_NEWEST)/.stamp
	@echo "== suite with the newest libraries"
	$(VENV_NEWEST)/bin/python -m pytest $(PYTEST_ARGS)

test-openwrt: $(VENV_OWRT)/.stamp
	@echo "== suite with the OpenWrt 24.10 libraries"
	$(VENV_OWRT)/bin/python -m pytest $(PYTEST_ARGS)

bootstrap:
	@sh scripts/bootstrap-host.sh

# OpenWrt's userland (procd, ubusd, logd, uci, opkg, ...) from the kit in
# ../shared, into .venv/openwrt-userland; rebuilt only when the kit changes.
userland:
	@sh scripts/build-openwrt.sh

# The lab (remsim_lab/) sits beside the package and never ships; a .pth file puts
# the repository on each venv's path so tests, benchmarks and the demo import it.
venvs: $(VENV_NEWEST)/.stamp $(VENV_OWRT)/.stamp

$(VENV_NEWEST)/.stamp: setup.cfg pyproject.toml requirements-dev.txt
	rm -rf $(VENV_NEWEST)
	$(PYTHON) -m venv $(VENV_NEWEST)
	$(VENV_NEWEST)/bin/pip install -q --upgrade pip
	$(VENV_NEWEST)/bin/pip install -q --upgrade -e . -r requirements-dev.txt
	$(VENV_NEWEST)/bin/pip freeze > $(VENV_NEWEST)/freeze.txt
	$(VENV_NEWEST)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
		| xargs -I{} sh -c 'echo "$(CURDIR)" > {}/remsim-lab.pth'
	touch $@

$(VENV_OWRT)/.stamp: setup.cfg pyproject.toml requirements-dev.txt constraints/openwrt-24.10.txt
	rm -rf $(VENV_OWRT)
	$(PYTHON) -m venv $(VENV_OWRT)
	$(VENV_OWRT)/bin/pip install -q --upgrade pip
	$(VENV_OWRT)/bin/pip install -q -c constraints/openwrt-24.10.txt -e . -r requirements-dev.txt
	$(VENV_OWRT)/bin/pip freeze > $(VENV_OWRT)/freeze.txt
	$(VENV_OWRT)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
		| xargs -I{} sh -c 'echo "$(CURDIR)" > {}/remsim-lab.pth'
	touch $@

# ruff on all the Python here and mypy on the package, with the versions pinned
# in requirements-lint.txt, installed into the newest set's environment only.
LINT_STAMP := $(VENV_NEWEST)/.lint-stamp

lint: $(LINT_STAMP)
	sh scripts/run-suites.sh --lint $(VENV_NEWEST)

$(LINT_STAMP): $(VENV_NEWEST)/.stamp requirements-lint.txt
	$(VENV_NEWEST)/bin/pip install -q -r requirements-lint.txt
	touch $@

ipk:
	$(PYTHON) scripts/build_ipk.py --out dist

# Every benchmark in bench/ beside the limit it measures in the same run, one
# summary table (about 6 min on 2 cores; docs/PERFORMANCE.md). BENCH_ARGS:
# --quick (smallest trial counts), --only NAME,..., --json FILE.
BENCH_ARGS ?=
bench: bootstrap $(VENV_NEWEST)/.stamp
	$(VENV_NEWEST)/bin/python bench/run_all.py $(BENCH_ARGS)

# The suite's fuzz tests (marked `fuzz`), each with FUZZ_SCALE times its inputs:
# 1.11 million at 150 (docs/fuzzing.md).
FUZZ_SCALE ?= 150
fuzz: $(VENV_NEWEST)/.stamp
	REMSIM_FUZZ_SCALE=$(FUZZ_SCALE) $(VENV_NEWEST)/bin/python -m pytest -p no:cacheprovider \
		-m fuzz --timeout=0 -q --hypothesis-show-statistics $(PYTEST_ARGS)

clean:
	rm -rf .venv build dist *.egg-info
