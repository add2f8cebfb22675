# net-gazer dev loop. `make` (or `make help`) lists the targets.
#
# Everything runs from the project venv (.venv); `make deps` creates it and installs the Debian
# packages the sensor and the tests need. Warm, `make deps` only checks and returns.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

# The interpreter the venv is created from (3.11+, see pyproject.toml).
PYTHON3 ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Where `make run` keeps the collector's data and log.
RUN_DIR ?= .run
# `make run IFACE=eth0` captures on a real interface instead of running the lab demo.
IFACE ?=

# Debian packages: libpcap for pypcap, tshark/tcpdump for test references, iproute2/ethtool/
# iptables for the namespace lab, traceroute/scamper as reference tracers, procps for ps/sysctl,
# docker-compose to validate docker-compose.yml (no engine needed), util-linux for setpriv.
# `make deb` and its test: debhelper, python3-dev/-venv (the package's venv), lintian, debootstrap.
APT_PACKAGES := libpcap-dev tshark tcpdump iproute2 ethtool iptables traceroute scamper procps \
	docker-compose util-linux chromium
APT_PACKAGES += debhelper dpkg-dev fakeroot python3-dev python3-venv lintian debootstrap

.PHONY: help deps apt-deps venv ui proto docs lint typecheck test run bench fuzz certs deb clean distclean

help: ## Show this list of targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-10s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

deps: apt-deps venv ## Install Debian packages (root) and the venv with the dev extras; quick when done.

# apt-get runs only when a package is missing, so a warm `make deps` needs neither root nor network.
apt-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
		[[ "$$(dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null)" == "install ok installed" ]] \
			|| missing+=" $$p"; \
	done; \
	if [[ -z "$$missing" ]]; then exit 0; fi; \
	if [[ "$$(id -u)" -ne 0 ]]; then \
		echo "Missing Debian packages:$$missing; run 'sudo make deps' once to install them." >&2; \
		exit 1; \
	fi; \
	echo "Installing Debian packages:$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections; \
	apt-get update -q; \
	apt-get install -y -q --no-install-recommends $$missing

# The venv is created once; the editable install reruns whenever pyproject.toml changes.
# Ordered after apt-deps (pypcap compiles against libpcap-dev), also under `make -j`.
venv: $(STAMP)

$(PY): | apt-deps
	$(PYTHON3) -m venv $(VENV)

$(STAMP): pyproject.toml | apt-deps $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@

# The viewer's scripts: npm installs the locked front-end libraries (no install scripts run) and
# esbuild bundles them into collector/web/static/dist, which the wheel ships. Rebuilt when a
# source or the lock file changes.
UI_DIR := collector/web/ui
UI_DIST := collector/web/static/dist
UI_SOURCES := $(wildcard $(UI_DIR)/src/*) $(wildcard $(UI_DIR)/bench/*) $(UI_DIR)/build.mjs
ui: $(UI_DIST)/BUILT ## Bundle the viewer's front-end (npm ci + esbuild) into collector/web/static/dist.

$(UI_DIR)/node_modules/.package-lock.json: $(UI_DIR)/package-lock.json $(UI_DIR)/package.json
	@command -v npm >/dev/null || { echo "The viewer needs Node.js 18+ and npm to build its scripts; install them (Debian: nodejs npm)." >&2; exit 1; }
	npm ci --prefix $(UI_DIR) --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

$(UI_DIST)/BUILT: $(UI_DIR)/node_modules/.package-lock.json $(UI_SOURCES)
	node $(UI_DIR)/build.mjs

proto: venv ## Regenerate proto/net_gazer/v1/wire_pb2*.py(i) from the .proto sources.
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PYTHON="$(CURDIR)/$(PY)" scripts/gen_proto.sh

docs: venv ## Regenerate docs/plugin-hooks.md and the code docs/plugins.md includes.
	$(PY) scripts/gen_plugin_docs.py

# .typecheck holds symlinks to the sources: excluded here too, not only through .gitignore.
lint: venv ## ruff check and ruff format --check.
	$(VENV)/bin/ruff check --extend-exclude .typecheck .
	$(VENV)/bin/ruff format --check --extend-exclude .typecheck .

# mypy cannot follow setuptools' editable package-dir mapping, so it checks a symlink farm that
# has the installed layout. Rebuilt every time so that new modules appear.
typecheck: venv ## mypy --strict on the net_gazer package (through the .typecheck symlink farm).
	rm -rf .typecheck
	mkdir -p .typecheck/net_gazer
	for f in net_gazer/*.py; do ln -s "../../$$f" .typecheck/net_gazer/; done
	ln -s ../../sensor .typecheck/net_gazer/sensor
	ln -s ../../plugins .typecheck/net_gazer/plugins
	ln -s ../../collector .typecheck/net_gazer/collector
	ln -s ../../lab .typecheck/net_gazer/lab
	ln -s ../../net_gazer/scaffold .typecheck/net_gazer/scaffold
	ln -s ../../proto/net_gazer/v1 .typecheck/net_gazer/v1
	MYPYPATH=.typecheck $(VENV)/bin/mypy -p net_gazer

# Tests need root (namespaces, capture); CI runs as root.
test: deps ui lint typecheck ## Lint, typecheck, then the whole pytest suite (needs root).
	$(PY) -m pytest -q -p no:cacheprovider

run: deps ui ## Demo: collector + the namespace lab with a sensor and traffic (root); `make run IFACE=eth0`: live.
	RUN_DIR='$(RUN_DIR)' IFACE='$(IFACE)' VENV='$(VENV)' bash scripts/run-demo.sh

bench: venv ui ## Run every bench/bench_*.py.
	@shopt -s nullglob; benches=(bench/bench_*.py); \
	if (( $${#benches[@]} == 0 )); then echo "No benchmarks in bench/."; exit 0; fi; \
	for b in "$${benches[@]}"; do echo "== $$b"; $(PY) "$$b"; done

# The long fuzzing run; `make test` runs the same harness on a small budget (tests/test_fuzz.py).
# `make fuzz FUZZ_EXAMPLES=200000`: about 18 min at the defaults on 2 CPUs.
FUZZ_EXAMPLES ?= 100000
FUZZ_INGEST_EXAMPLES ?= 3000
fuzz: venv ## Long fuzzing run: FUZZ_EXAMPLES per byte target, FUZZ_INGEST_EXAMPLES ingest scenarios.
	NG_FUZZ_PROFILE=long NG_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) NG_FUZZ_INGEST_EXAMPLES=$(FUZZ_INGEST_EXAMPLES) \
		$(PY) -m pytest tests/test_fuzz.py -q -p no:cacheprovider --timeout=0 --hypothesis-show-statistics

# `make certs SENSORS="gw1 gw2"`: a small CA, the collector's certificate and one per sensor, in
# CERTS_DIR (kept out of git). See scripts/make-certs.sh; per-sensor tokens: scripts/make-token.sh.
CERTS_DIR ?= certs
SENSORS ?=
certs: ## Make a small CA: collector and sensor certificates in ./certs (SENSORS="id ...").
	scripts/make-certs.sh $(CERTS_DIR) $(SENSORS)

# The sensor's .deb (recipe in deploy/debian, built in build/deb with Debian's /usr/bin/python3).
DEB_DIR ?= dist
deb: apt-deps ## Build the sensor's Debian package into dist/ (deploy/README.md).
	deploy/build-deb.sh $(DEB_DIR)

clean: ## Remove .run, .typecheck, build artefacts and caches (keeps the venv).
	rm -rf .run .typecheck build dist ./*.egg-info .pytest_cache .mypy_cache .ruff_cache \
		.hypothesis .ci-artifacts $(UI_DIST) $(UI_DIR)/bench/dist
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o -path ./node_modules -prune \
		-o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean ## clean, and remove the venv and the viewer's node_modules too.
	rm -rf $(VENV) $(UI_DIR)/node_modules
