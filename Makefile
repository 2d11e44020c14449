# Two commands on a fresh clone: `make demo` and `make test`. Everything else is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo up test faults test-fast test-clock test-clock-quick lint bench up-services down-services clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/leadflow demo

# The whole local stack on the demo data (APIs, dashboard, Dagster webserver and daemon) until Ctrl-C.
up: $(STAMP)
	$(BIN)/leadflow up

TYPED := leadflow ingest_api reports_api sensors assets pipelines tests bench

# mypy runs beside the tests (the suite waits on services more than it computes: a minute of CI saved); its
# report is printed after theirs and either failing fails the target.
test: $(STAMP)
	$(BIN)/ruff check .
	@( $(BIN)/mypy $(TYPED) > $(VENV)/mypy.log 2>&1; echo $$? > $(VENV)/mypy.rc ) & mypy=$$!; \
	$(BIN)/pytest -q --durations=25 -m "not faults"; tests=$$?; wait $$mypy; \
	echo "mypy: $$(tail -n 1 $(VENV)/mypy.log)"; [ "$$(cat $(VENV)/mypy.rc)" = 0 ] || cat $(VENV)/mypy.log; \
	[ $$tests = 0 ] && [ "$$(cat $(VENV)/mypy.rc)" = 0 ]

# The fault suite: steady webhooks while the ingest API, the landing, PostgreSQL, Kafka and a dispatcher
# fail in turn; accepted == landed, nothing sent twice. Its own stack (a state directory of its own).
faults: $(STAMP)
	$(BIN)/pytest -q -s -m faults tests/test_faults.py

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not services"

# The whole suite with the clock a year ahead and a year back (Debian's faketime): no test may depend
# on the date it runs. About twice `make test`; run it before a release or weekly.
test-clock: $(STAMP)
	tests/clock/run +365d -365d

# What CI runs of it: the tests marked `clock` (tests/conftest.py CLOCK_FILES: the code that reads the clock the
# most), both directions at once (CLOCK_PARALLEL). The rest of the suite ran clean under the full `make test-clock`
# and is dated by the moment it passes (LEADFLOW_AS_OF, `now=`); it is left out to keep CI under its 30 minutes.
test-clock-quick: $(STAMP)
	CLOCK_PARALLEL=1 tests/clock/run +365d -365d -- -m "clock and not faults"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy $(TYPED)

bench: $(STAMP)
	$(BIN)/python -m bench

up-services: $(STAMP)
	$(BIN)/leadflow services up

down-services: $(STAMP)
	$(BIN)/leadflow services down

clean:
	-$(BIN)/leadflow services down
	rm -rf $(VENV) .leadflow dbt_project/target dbt_project/logs .mypy_cache .ruff_cache .pytest_cache
