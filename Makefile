# The two commands a fresh machine needs: `make demo` and `make test`.
# Each one builds the virtualenv it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The real Glance that functional tests and the bench start: its own venv.
GLANCE_VENV ?= .glance-venv
GLANCE_STAMP := $(GLANCE_VENV)/.installed

.PHONY: venv glance-venv demo test lint unit functional conformance bench clean test-tools

# Debian packages the functional tests drive: Chromium and its driver (the
# browser console test), noVNC's web files, Prometheus (the metrics test).
TEST_TOOLS := chromium chromedriver prometheus
test-tools:
	@missing=""; \
	for t in $(TEST_TOOLS); do command -v $$t >/dev/null || missing=1; done; \
	[ -f /usr/share/novnc/vnc_lite.html ] || missing=1; \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver novnc prometheus; \
	fi

venv: $(STAMP)

# Debian packages the libvirt extra builds against (libvirt-dev, pkg-config)
# and its tests use (virt-xml-validate from libvirt-clients, which runs
# xmllint from libxml2-utils; qemu-img from qemu-utils makes and reads back
# qcow2 images); installed when missing (as root, as CI runs).
LIBVIRT_DEBS := libvirt-dev pkg-config libvirt-clients libxml2-utils qemu-utils

$(STAMP): requirements.txt test-requirements.txt pyproject.toml setup.cfg
	@missing=$$(for p in $(LIBVIRT_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt-get install $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -r test-requirements.txt
	$(BIN)/pip install -q -e '.[libvirt]'
	touch $(STAMP)

glance-venv: $(GLANCE_STAMP)

$(GLANCE_STAMP): glance-requirements.txt
	$(PYTHON) -m venv $(GLANCE_VENV)
	$(GLANCE_VENV)/bin/pip install -q --upgrade pip
	$(GLANCE_VENV)/bin/pip install -q -r glance-requirements.txt
	touch $(GLANCE_STAMP)

demo: venv
	$(BIN)/python -m compute_agent.demo

lint: venv
	$(BIN)/ruff check .

test: venv glance-venv lint test-tools
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

unit: venv
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

functional: venv glance-venv test-tools
	$(BIN)/python -m pytest -q tests/functional $(PYTEST_ARGS)

conformance: venv
	$(BIN)/python -m pytest -q -s tests/conformance $(PYTEST_ARGS)

bench: venv glance-venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(GLANCE_VENV) build dist *.egg-info .pytest_cache .ruff_cache
