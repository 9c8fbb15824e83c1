# tierstore: set-up, demo and tests.
#   make demo     create .venv, install tierstore with its loader, run `tierstore demo`
#   make test     install the test's Debian packages (as root, when missing), then pytest
#                 (Ceph and PostgreSQL required), ruff and mypy; extra pytest args:
#                 make test PYTEST_ARGS="-x -k s3"
#   make lint     ruff + mypy only
#   make wheel-check  build the sdist and the wheel (from the sdist), install the wheel in a fresh
#                 venv and, with no source tree beside it, import every module and run the demo
# CI runs .ci/run (= make test, then make wheel-check). A CPU-only torch:
# make test TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (make wheel-check takes it too)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

VENV ?= .venv
PYTHON = $(shell command -v python3.11 || command -v python3)
TORCH ?= torch==2.13.0
TORCH_INDEX_URL ?=
PYTEST_ARGS ?=
# the venv is re-synced only when these change
HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
CEPH_BINS := ceph-mon ceph-mgr ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool
TOOL_BINS := fio strace
# Debian keeps PostgreSQL's server binaries off PATH, under /usr/lib/postgresql/<version>/bin
PG_BINS := initdb pg_ctl postgres
APT_PKGS := ceph-mon ceph-mgr ceph-osd radosgw ceph-common fio strace postgresql python3 python3-venv
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lint wheel-check sysdeps clean

demo: $(VENV)/.installed-$(HASH)
	$(VENV)/bin/tierstore demo

# The tree is compiled to bytecode first: where PYTHONDONTWRITEBYTECODE is set (CI's machines)
# every command a test starts would otherwise compile tierstore anew (0.45 s -> 0.25 s each).
test: $(VENV)/.installed-test-$(HASH)
	$(VENV)/bin/python -m compileall -q -j 0 tierstore loader policies bench tests >/dev/null
	rc=0; TIERSTORE_REQUIRE_CEPH=1 TIERSTORE_REQUIRE_PG=1 $(VENV)/bin/python -m pytest -q --durations=20 $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -gt 128 ]; then echo "pytest died of signal $$((rc - 128)) (all threads: .pytest-faults.log)"; \
	  grep -v -e /_pytest/ -e /pluggy/ -e '<frozen' .pytest-faults.log | awk 'NR == 1 || /^Current thread/ {on = 1} on {print} /^$$/ {on = 0}'; fi; \
	$(MAKE) --no-print-directory lint || rc=1; exit $$rc

lint: $(VENV)/.installed-test-$(HASH)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# needs no .venv: it makes its own, in a temporary folder (.ci/wheel-check says how)
wheel-check:
	PYTHON='$(PYTHON)' TORCH='$(TORCH)' TORCH_INDEX_URL='$(TORCH_INDEX_URL)' bash .ci/wheel-check

# Debian packages the tests need (a real Ceph radosgw, a real PostgreSQL); apt runs only when
# something is missing.
sysdeps:
	@ok=1; for b in $(CEPH_BINS) $(TOOL_BINS); do command -v $$b >/dev/null || ok=0; done; \
	for b in $(PG_BINS); do \
	  command -v $$b >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/$$b" >/dev/null || ok=0; \
	done; \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || ok=0; \
	if [ $$ok = 0 ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "apt-get install $(APT_PKGS)"; \
	    export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; \
	    apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 $(APT_PKGS) >/dev/null; \
	  else echo "warning: Ceph, PostgreSQL or python3-venv missing and not root; install: $(APT_PKGS)" >&2; fi; \
	fi

# $(call install,<stamp>,<pip target>): one venv, torch first, then the project under constraints.txt
define install
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV) \
	  || { echo "cannot create $(VENV): install python3.11 and python3-venv" >&2; exit 1; }
	$(VENV)/bin/pip install -q $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) $(TORCH)
	$(VENV)/bin/pip install -q -c constraints.txt -e '$(2)'
	find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(HASH)' -delete
	touch $(1)
endef

$(VENV)/.installed-$(HASH):
	$(call install,$@,.[loader])

$(VENV)/.installed-test-$(HASH): | sysdeps
	$(call install,$@,.[test])

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
