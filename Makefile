# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) the virtual environment in .venv and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# pytest-xdist workers: each has its own servers and Airflow database; a file's tests stay on one.
TEST_WORKERS ?= 2

.PHONY: demo demo-stop airflow test bench lock clean

$(INSTALLED): requirements.txt requirements-dev.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements-dev.txt -c constraints.txt
	touch $@

demo: $(INSTALLED)  ## the whole retrain -> promote cycle of the demo model, on this machine
	$(BIN)/python -m embedded.demo

demo-stop: $(INSTALLED)  ## stop the MLflow server the demo left running
	$(BIN)/python -m embedded.demo --stop

airflow: $(INSTALLED)  ## the same DAGs in `airflow standalone`, with the demo's MLflow server
	$(BIN)/python -m embedded.standalone

test: $(INSTALLED)  ## lint, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(INSTALLED)  ## tables of DAG parse cost, cost of waiting, one run's orchestration, the serving runtimes, and mlflow_gc vs `mlflow gc` (1,000 and 10,000 runs: most of the ~15 minutes)
	$(BIN)/python -m benchmarks.parse_cost
	$(BIN)/python -m benchmarks.waiting_cost
	$(BIN)/python -m benchmarks.orchestration
	$(BIN)/python -m benchmarks.serving_runtime
	$(BIN)/python -m benchmarks.mlflow_gc --runs 1000 10000

lock: $(INSTALLED)  ## re-resolve constraints.txt after changing a requirements file
	$(BIN)/uv pip compile requirements-dev.txt --universal --python-version 3.11 -o constraints.txt

clean:
	rm -rf $(VENV) .demo .pytest_cache
