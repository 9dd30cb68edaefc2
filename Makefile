# The task list: what people, CI and hooks run.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo airflow mlflow serve test lint format bench lock clean cdnow

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

# Online scores of the champion on the demo's state (after `make demo`), until Ctrl-C.
serve: $(STAMP)
	$(PY) -m pipelines serve

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
	$(PY) -m bench.serve

# The real-data example project in full: CDNOW's 18 months of purchases, night by night,
# trained on the first year, then scored and monitored to the end (own state root).
CDNOW := MLOPS_PROJECT=cdnow MLOPS_STATE_ROOT=$(CURDIR)/.state-cdnow
cdnow: $(STAMP)
	$(CDNOW) $(PY) projects/cdnow/land.py
	$(CDNOW) $(PY) -m pipelines run --features-only --from 1997-01-01 --to 1997-12-31
	$(CDNOW) $(PY) -m pipelines train --as-of 1997-12-31 --reason "make cdnow"
	$(CDNOW) $(PY) -m pipelines run --from 1998-01-01 --to 1998-06-30
	@echo "CDNOW: predictions in .state-cdnow/lake/predictions/, drift reports in .state-cdnow/reports/drift/"

# Re-pin requirements.txt from requirements.in (needs network to the package index).
lock: $(STAMP)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.11 --custom-compile-command "make lock" -o requirements.txt

clean:
	rm -rf .state .state-cdnow .pytest_cache .ruff_cache test-artifacts
