# Two commands on a fresh machine:  `make demo`  and  `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# DDS stays on loopback; every run gets its own domain unless one is given.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= $(shell echo $$(( $$$$ % 100 + 100 )))
export MUJOCO_GL ?= egl
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo lint test test-fast bench clean
setup:
	@VENV=$(VENV) scripts/setup_env.sh

demo: setup
	$(PY) -m gs_semantic_node.cli demo --out out/demo

# House rules: ruff (lint + format, line length 120) and the import contracts of pyproject.toml.
lint: setup
	$(VENV)/bin/ruff check gs_semantic_node tests launch setup.py
	$(VENV)/bin/ruff format --check gs_semantic_node tests launch setup.py
	$(VENV)/bin/lint-imports

# Full suite (what CI runs), after the house rules. `make test-fast` skips tests marked slow.
test: lint
	$(PY) -m pytest -q -ra tests

test-fast: lint
	$(PY) -m pytest -q -ra -m "not slow" tests

bench: setup
	$(PY) -m gs_semantic_node.cli bench quality --seeds 101,102,103 --out out/bench
	$(PY) -m gs_semantic_node.cli bench speed --out out/bench

clean:
	rm -rf out ros2_ws/build
