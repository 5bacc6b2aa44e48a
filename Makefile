# podtrail: every target installs what it needs first (idempotent), so each works on a fresh node.
VENV    ?= .venv
QVENV   ?= .venv-qradar
QSTAMP  := $(QVENV)/.installed
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
ARGS    ?=

.PHONY: setup bpf run test lint bench docs rules clean

setup: $(STAMP) $(QSTAMP)
	@bash scripts/setup-system.sh
	@bash scripts/build-bpf.sh

# CO-RE objects: vmlinux.h from the kernel's BTF (build/bpf), podtrail/bpf/*.bpf.c compiled once
# to podtrail/bpf/obj/*.bpf.o (shipped in the package; nothing is compiled at run time).
bpf:
	bash scripts/build-bpf.sh

# The QRadar AQL Sigma backend pins pySigma < 0.12; it gets its own venv (see the requirements file).
$(QSTAMP): podtrail/rules/qradar-requirements.txt
	test -x $(QVENV)/bin/python || /usr/bin/python3 -m venv $(QVENV)
	$(QVENV)/bin/python -m pip install -q -r podtrail/rules/qradar-requirements.txt
	touch $(QSTAMP)

$(STAMP): pyproject.toml scripts/setup-system.sh
	bash scripts/setup-system.sh
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The main job on the embedded default: eBPF sensor -> container context -> JSON lines on stdout.
run: setup
	$(VENV)/bin/podtrail run $(ARGS)

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
	rm -rf $(VENV) $(QVENV) .pytest_cache .mypy_cache .ruff_cache build/bpf podtrail/bpf/obj
