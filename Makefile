# podtrail: every target installs what it needs first (idempotent), so each works on a fresh node.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
ARGS    ?=
MAKEFLAGS += --no-print-directory

.PHONY: setup bpf native run test lint bench docs rules image thrift clean

# Set-up writes only to stderr, and make echoes no recipe line of `run`: `make run > events.jsonl`
# captures events and nothing else.
setup: $(STAMP)
	@bash scripts/setup-system.sh 1>&2
	@bash scripts/build-bpf.sh 1>&2
	@PY=$(PY) bash scripts/build-native.sh 1>&2

# CO-RE objects: vmlinux.h from the kernel's BTF (build/bpf), podtrail/bpf/*.bpf.c compiled once
# to podtrail/bpf/obj/*.bpf.o (shipped in the package; nothing is compiled at run time).
bpf:
	bash scripts/build-bpf.sh

# Native accelerators (setup.py): every podtrail/**/_*.c built in place for the venv's Python.
native: $(STAMP)
	PY=$(PY) bash scripts/build-native.sh

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

# The DaemonSet image with podman, from a Debian base made here when no registry is reachable
# (IMAGE, BASE: see scripts/image.sh); tests/deploy/test_image.py builds and runs it.
image: setup
	bash scripts/image.sh

# Regenerate the osquery Thrift bindings from podtrail/tables/osquery_extension.thrift (CI
# fails when they are stale).
thrift: setup
	bash scripts/thrift-gen.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build podtrail/bpf/obj
	find podtrail -name '_*.so' -delete
