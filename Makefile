# The task list: what people, CI and hooks run.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo airflow mlflow test lint format bench lock clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the pinned requirements into $(VENV)/ (log: $(VENV)/install.log) ..."
	@$(PY) -m pip install --disable-pip-version-check -r requirements.txt > $(VENV)/install.log 2>&1 \
		|| (tail -50 $(VENV)/install.log; exit 1)
	@$(PY) -m pip install --disable-pip-version-check --quiet --no-deps -e . >> $(VENV)/install.log 2>&1 \
		|| (tail -50 $(VENV)/install.log; exit 1)
	$(PY) -c "import airflow.sdk, feast, mlflow, great_expectations, xgboost, sklearn"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pipelines demo

airflow: $(STAMP)
	$(PY) -m pipelines ui

mlflow: $(STAMP)
	$(PY) -m pipelines mlflow-ui

test: $(STAMP)
	$(PY) -m pytest --numprocesses auto --dist loadfile --no-loadscope-reorder --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) -m bench.materialize
	$(PY) -m bench.score
	$(PY) -m bench.drift
	$(PY) -m bench.nightly --compare

# Re-pin requirements.txt from requirements.in (needs network to the package index).
lock: $(STAMP)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.11 --custom-compile-command "make lock" -o requirements.txt

clean:
	rm -rf .state .pytest_cache .ruff_cache test-artifacts
