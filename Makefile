# Set-up and everyday commands. `make demo` and `make test` work on a fresh Debian machine:
# they install what is missing (Debian packages, a .venv with the project) and start what
# the tests need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
APT_PACKAGES := chromium chromium-driver fonts-liberation fonts-noto-color-emoji fonts-noto-cjk fonts-lohit-deva rabbitmq-server

.PHONY: demo report-screenshot test test-fast test-deploy image check fmt bench system-deps venv filter-lists services clean

$(STAMPS):
	@mkdir -p $(STAMPS)

# Debian packages: Chromium and its driver (no tool may download a browser), fonts for
# real-looking pages. Installed only when something is missing.
$(STAMPS)/system: | $(STAMPS)
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi
	@test -x /usr/bin/chromium || { echo "error: /usr/bin/chromium is missing after install"; exit 1; }
	@touch $@

system-deps: $(STAMPS)/system

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

EXAMPLE_ENGINE := examples/distshot-engine-example

# The project with every engine and S3, plus the example third-party engine package, which
# the test suite runs the conformance suite against (a plug-in installed like any other).
$(STAMPS)/venv: pyproject.toml $(EXAMPLE_ENGINE)/pyproject.toml $(BIN)/python | $(STAMPS)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q -e $(EXAMPLE_ENGINE)
	@touch $@

# EasyList and EasyPrivacy for block_ads and block_trackers: the copies Debian's uBlock Origin
# package ships (webext-ublock-origin-chromium), taken out of the package into the venv
# (distshot/engines/blocking.py: DEFAULT_FILTER_DIR), not installed: Debian's
# /etc/chromium.d/extensions makes /usr/bin/chromium load every extension under
# /usr/share/chromium/extensions, so installing it would block ads in every shot of every
# engine. Newer lists: the worker settings ad_filters and tracker_filters name them.
FILTER_PACKAGE := webext-ublock-origin-chromium
FILTER_DIR := $(CURDIR)/$(VENV)/share/distshot/filterlists
FILTER_ASSETS := ./usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist

$(STAMPS)/filterlists: $(STAMPS)/venv
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && cd "$$tmp" && \
	if ! apt-get download -q $(FILTER_PACKAGE) >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -q >/dev/null && \
	  apt-get download -q $(FILTER_PACKAGE) >/dev/null; \
	fi && \
	dpkg-deb --fsys-tarfile $(FILTER_PACKAGE)_*.deb | tar -x $(FILTER_ASSETS) && \
	mkdir -p $(FILTER_DIR) && cp $(FILTER_ASSETS)/easylist.txt $(FILTER_ASSETS)/easyprivacy.txt $(FILTER_DIR)/ && \
	echo "filter lists from $$(ls $(FILTER_PACKAGE)_*.deb) in $(FILTER_DIR)"
	@touch $@

filter-lists: $(STAMPS)/filterlists

venv: $(STAMPS)/venv $(STAMPS)/filterlists

demo: $(STAMPS)/system $(STAMPS)/venv
	$(BIN)/python examples/run_demo.py

# The README's picture of a report (docs/report.png), taken by distshot of its own report.
report-screenshot: $(STAMPS)/system $(STAMPS)/venv
	$(BIN)/python examples/report_screenshot.py

# The shared RabbitMQ on 127.0.0.1:5672 (guest/guest); started when it is not answering.
services: $(STAMPS)/system
	@if ! $(PYTHON) -c 'import socket; socket.create_connection(("127.0.0.1", 5672), 2)' 2>/dev/null; then \
	  echo "starting RabbitMQ"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO rabbitmq-server -detached; \
	  for i in $$(seq 1 60); do \
	    $(PYTHON) -c 'import socket; socket.create_connection(("127.0.0.1", 5672), 2)' 2>/dev/null && break; \
	    sleep 1; \
	  done; \
	fi

# Test files run TEST_WORKERS at a time (pytest-xdist), each file whole in one process so
# that its module-wide fixtures (a browser, a broker node) are made once. TEST_WORKERS=0
# runs everything in this one process.
TEST_WORKERS ?= 3

test: $(STAMPS)/system $(STAMPS)/venv $(STAMPS)/filterlists services
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

test-fast: $(STAMPS)/system $(STAMPS)/venv $(STAMPS)/filterlists services
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

# Containers (README "Containers (Podman or Docker)"): `make image` builds the distshot image
# and the stack's stand-in RabbitMQ and S3 images with Podman; `make test-deploy` builds them
# and runs compose.yaml's stack for real (tests/deploy/test_stack.py: health, serve, drain with
# 1 and 3 workers, a 200-URL batch with a worker killed, a tear-down that leaves nothing), a
# few minutes, not part of `make test`. deploy/podman/setup.sh installs podman and
# podman-compose when missing and builds the Debian base image with debootstrap (cached).
CONTAINERS_CONF := $(CURDIR)/deploy/podman/containers.conf
export CONTAINERS_CONF

image: $(STAMPS)/venv
	PYTHON=$(CURDIR)/$(BIN)/python deploy/podman/setup.sh
	deploy/podman/build-images.sh

test-deploy: $(STAMPS)/venv
	PYTHON=$(CURDIR)/$(BIN)/python deploy/podman/setup.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/deploy/test_stack.py $(PYTEST_ARGS)

check: $(STAMPS)/venv
	$(BIN)/ruff check distshot tests examples bench
	$(BIN)/ruff format --check distshot tests examples bench
	$(BIN)/mypy --strict $(EXAMPLE_ENGINE)/distshot_engine_cdp
	$(BIN)/mypy

fmt: $(STAMPS)/venv
	$(BIN)/ruff format distshot tests examples bench
	$(BIN)/ruff check --fix distshot tests examples bench

# Figures, not tests (docs/benchmarks.md). shot-scraper is optional: throughput.py says so
# and skips it when its venv could not be made.
bench: $(STAMPS)/system $(STAMPS)/venv $(STAMPS)/filterlists services
	$(BIN)/python bench/corpus.py --install
	-$(BIN)/python bench/shot_scraper_env.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/job_cost.py
	$(BIN)/python bench/engines.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/tall_pages.py
	$(BIN)/python bench/serve.py

clean:
	rm -rf $(STAMPS) shots .pytest_cache .mypy_cache .ruff_cache
