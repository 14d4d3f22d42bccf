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

CARGO  ?= cargo
PROFILE = --release
BIN     = target/release/attune-core-timer-sensor
PY_COMPONENT = guest-python/target/timer_python.wasm
JS_DIR       = examples/js-timer
JS_COMPONENT = $(JS_DIR)/target/timer_js.wasm
DIFF_VENV    = tests/oracle/.venv
TARGET_DIR   = $(or $(CARGO_TARGET_DIR),target)

.PHONY: all setup build test bench run check-example component python-component js-component \
	differential fmt clippy clean

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

# Every test; the benchmarks are only compiled (they measure, see `make bench`). Every
# cargo step selects the whole workspace with its dev-dependencies, so all share one set of
# compiled dependencies; the runner the last two steps use is the one the tests built.
test: setup python-component js-component $(DIFF_VENV)/.installed
	PYTHON_TIMER_WASM=$(CURDIR)/$(PY_COMPONENT) $(CARGO) test $(PROFILE) --workspace --no-fail-fast
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

run: build
	$(BIN) --rules examples/rules.json --log-format pretty

check-example: build
	$(BIN) check --trigger-ref core.crontimer \
	  '{"expression":"0 30 9 * * MON-FRI","timezone":"Europe/Berlin"}' --count 5

fmt:
	$(CARGO) fmt --all

clippy: setup
	$(CARGO) clippy $(PROFILE) --workspace --all-targets

clean:
	$(CARGO) clean
