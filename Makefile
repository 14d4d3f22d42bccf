# Attune timer sensor — build, test and run.
#
#   make build   build the daemon (with the timer component embedded)
#   make test    install what the build needs, then run every test
#   make run     run the daemon in local mode on examples/rules.json (no servers needed)
#   make bench   measurements (see BENCHMARKS.md)
#   make check-example   try the `check` command on a Berlin weekday cron rule
#   make python-component   build the second, Python implementation of the timer logic
#   make js-component       build the JavaScript example component (examples/js-timer)
#   make differential       the randomized differential test of the timer logic
#   make deploy-check       check the alert rules, their tests and the systemd unit (deploy/)

CARGO  ?= cargo
PROFILE = --release
BIN     = target/release/attune-core-timer-sensor
PY_COMPONENT = guest-python/target/timer_python.wasm
JS_DIR       = examples/js-timer
JS_COMPONENT = $(JS_DIR)/target/timer_js.wasm
DIFF_VENV    = tests/oracle/.venv
TARGET_DIR   = $(or $(CARGO_TARGET_DIR),target)
TOOLS        = $(TARGET_DIR)/tools
PROMTOOL     = $(TOOLS)/promtool
UNIT         = deploy/systemd/attune-core-timer-sensor.service

.PHONY: all setup build test bench run check-example component python-component js-component \
	differential deploy-check fmt clippy clean

all: build

# What a fresh machine lacks: the wasm32-wasip2 target the component is built for.
setup:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

build: setup
	$(CARGO) build $(PROFILE) --workspace

# The default component on its own, for use with --component or the conformance runner.
component: setup
	$(CARGO) build --profile guest --target wasm32-wasip2 -p guest-timer
	@echo "component: target/wasm32-wasip2/guest/guest_timer.wasm"

# The Python timer component (guest-python/): python3 (3.10+) and, on first use, PyPI.
python-component: $(PY_COMPONENT)

$(PY_COMPONENT): guest-python/build.sh guest-python/requirements.txt guest-python/app.py \
		$(wildcard guest-python/timerlogic/*.py) $(wildcard wit/*.wit)
	guest-python/build.sh

# The JavaScript example component (examples/js-timer/): node 20+ and npm; on first use,
# the npm registry (the versions pinned in package-lock.json).
js-component: $(JS_COMPONENT)

$(JS_DIR)/node_modules/.package-lock.json: $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --no-audit --no-fund

$(JS_COMPONENT): $(JS_DIR)/node_modules/.package-lock.json $(JS_DIR)/build.mjs \
		$(wildcard $(JS_DIR)/src/*.js) $(wildcard wit/*.wit)
	node $(JS_DIR)/build.mjs

$(DIFF_VENV)/.installed: tests/oracle/requirements.txt
	python3 -m venv $(DIFF_VENV)
	$(DIFF_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/oracle/requirements.txt
	touch $@

# The randomized differential test (fixed seed): the built-in component against croniter
# and python-dateutil (tests/oracle/differential.py); needs PyPI on first use.
differential: $(DIFF_VENV)/.installed
	$(CARGO) build $(PROFILE) -p conformance --bin conformance
	$(DIFF_VENV)/bin/python tests/oracle/differential.py --conformance $(TARGET_DIR)/release/conformance

# promtool, which checks and unit-tests the alert rules, from Debian's prometheus package,
# unpacked rather than installed: installing it would also install and start a Prometheus
# server. Without package lists it refreshes them once (`apt-get update`, as root); run as
# root, apt-get warns that the download is unsandboxed because the _apt user cannot write
# here, which is harmless.
$(PROMTOOL):
	rm -rf $(TOOLS)/promtool.tmp
	mkdir -p $(TOOLS)/promtool.tmp
	cd $(TOOLS)/promtool.tmp && { apt-get download prometheus || \
	  { apt-get update -qq && apt-get download prometheus; }; } || { \
	  echo "Cannot download Debian's prometheus package for promtool (apt-get download prometheus)" >&2; \
	  exit 1; }
	dpkg-deb -x $(TOOLS)/promtool.tmp/prometheus_*.deb $(TOOLS)/promtool.tmp/root
	cp $(TOOLS)/promtool.tmp/root/usr/bin/promtool $@.new
	mv $@.new $@
	rm -rf $(TOOLS)/promtool.tmp

# The deployment files by hand (host/tests/deploy_files.rs checks the same in `make test`).
# systemd-analyze verify exits 0 on warnings such as an unknown key or a value it cannot
# parse, so any line naming the unit fails the check. It runs on a copy whose ExecStart is
# an executable that exists here and whose EnvironmentFile is an empty file, the two
# things only an installed system has.
deploy-check: $(PROMTOOL)
	$(PROMTOOL) check rules deploy/prometheus/alerts.yml
	$(PROMTOOL) test rules deploy/prometheus/alerts_test.yml
	@dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && touch "$$dir/env" && \
	  sed -e 's|^ExecStart=.*|ExecStart=/bin/true|' -e "s|^EnvironmentFile=.*|EnvironmentFile=$$dir/env|" \
	    $(UNIT) > "$$dir/$(notdir $(UNIT))" && \
	  out=$$(systemd-analyze verify "$$dir/$(notdir $(UNIT))" 2>&1); rc=$$?; \
	  if [ $$rc -ne 0 ] || printf '%s\n' "$$out" | grep -qF '$(notdir $(UNIT))'; then \
	    printf '%s\n' "$$out" >&2; echo "systemd-analyze verify: $(UNIT) has problems" >&2; exit 1; \
	  fi; \
	  echo "systemd-analyze verify: $(UNIT) OK"

# Every test; the benchmarks are only compiled (they measure, see `make bench`). Every
# cargo step selects the whole workspace with its dev-dependencies, so all share one set of
# compiled dependencies; the runner the last two steps use is the one the tests built.
# promtool is passed by absolute path (the tests run in the crate's directory), like the
# Python component.
test: setup python-component js-component $(DIFF_VENV)/.installed $(PROMTOOL)
	PYTHON_TIMER_WASM=$(CURDIR)/$(PY_COMPONENT) PROMTOOL=$(abspath $(PROMTOOL)) \
	  $(CARGO) test $(PROFILE) --workspace --no-fail-fast
	$(CARGO) test $(PROFILE) --workspace --benches --no-run
	$(TARGET_DIR)/release/conformance --component $(JS_COMPONENT)
	$(DIFF_VENV)/bin/python tests/oracle/differential.py --conformance $(TARGET_DIR)/release/conformance

BENCH_SCENARIOS ?= 1k,10k,100k
BENCH_SECONDS   ?= 60

# Measurements, not tests (see BENCHMARKS.md; figures in target/bench/). Needs RabbitMQ.
#  1. per-fire cost of the component against the same logic compiled natively;
#  2. fire accuracy of the daemon: 1,000 and 10,000 rules every second and 100,000 rules
#     every 10 s, BENCH_SECONDS each, with the lateness plot;
#  3. start-up time (cold and warm compile cache) and resident memory by rule count;
#  4. per-call cost of the Python component against the Rust one.
bench: setup python-component
	$(CARGO) bench -p attune-core-timer-sensor --bench component_cost
	$(CARGO) bench -p attune-core-timer-sensor --bench fire_accuracy -- \
	  --scenario $(BENCH_SCENARIOS) --seconds $(BENCH_SECONDS)
	$(CARGO) bench -p attune-core-timer-sensor --bench startup
	PYTHON_TIMER_WASM=$(CURDIR)/$(PY_COMPONENT) $(CARGO) test $(PROFILE) -p conformance \
	  --test python_component -- --ignored --nocapture --test-threads=1

# With the admin listener on its default address: curl -s 127.0.0.1:8971/rules
run: build
	$(BIN) --rules examples/rules.json --log-format pretty --admin-addr 127.0.0.1:8971

check-example: build
	$(BIN) check --trigger-ref core.crontimer \
	  '{"expression":"0 30 9 * * MON-FRI","timezone":"Europe/Berlin"}' --count 5

fmt:
	$(CARGO) fmt --all

clippy: setup
	$(CARGO) clippy $(PROFILE) --workspace --all-targets

clean:
	$(CARGO) clean
