# podtrail: every target installs what it needs first (idempotent), so each works on a fresh node.
VENV    ?= .venv
QVENV   ?= .venv-qradar
QSTAMP  := $(QVENV)/.installed
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
ARGS    ?=
MAKEFLAGS += --no-print-directory

.PHONY: setup run test lint bench docs rules clean

# Set-up writes only to stderr, and make echoes no recipe line of `run`: `make run > events.jsonl`
# captures events and nothing else.
setup: $(STAMP) $(QSTAMP)
	@bash scripts/setup-system.sh 1>&2

# The QRadar AQL Sigma backend pins pySigma < 0.12; it gets its own venv (see the requirements file).
$(QSTAMP): podtrail/rules/qradar-requirements.txt
	@echo "podtrail: setting up $(QVENV)" 1>&2
	@test -x $(QVENV)/bin/python || /usr/bin/python3 -m venv $(QVENV) 1>&2
	@$(QVENV)/bin/python -m pip install -q -r podtrail/rules/qradar-requirements.txt 1>&2
	@touch $(QSTAMP)

$(STAMP): pyproject.toml scripts/setup-system.sh
	@echo "podtrail: setting up the system and $(VENV)" 1>&2
	@bash scripts/setup-system.sh 1>&2
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV) 1>&2
	@$(PY) -m pip install -q --upgrade pip 1>&2
	@$(PY) -m pip install -q -e '.[dev]' 1>&2
	@touch $(STAMP)

# The main job on the embedded default: eBPF sensor -> container context -> JSON lines on stdout.
run: setup
	@$(VENV)/bin/podtrail run $(ARGS)

test: setup
	$(VENV)/bin/ruff check podtrail tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest -ra $(ARGS)

bench: setup
	$(PY) -m bench $(ARGS)

docs: setup
	$(VENV)/bin/podtrail fields --markdown > docs/fields.md
	$(PY) -m podtrail.model.docs

# Regenerate the Splunk/Elastic/QRadar content from siem_content/sigma (CI fails when stale).
rules: setup
	$(VENV)/bin/podtrail rules build

clean:
	rm -rf $(VENV) $(QVENV) .pytest_cache .mypy_cache .ruff_cache
