# The README's commands. Each one creates the virtualenv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install java browser demo test test-fast test-pythons bench bench-s3 soak lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,spark]'
	@# byte-compile as a wheel install would (an editable install does not): every CLI start
	@# would otherwise compile captureq's modules when PYTHONDONTWRITEBYTECODE is set
	$(BIN)/python -m compileall -q captureq
	touch $(STAMP)

install: $(STAMP)

# The Spark tests need a Java runtime; install a headless JRE only when there is none.
java:
	@java -version >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless; }

# The report's browser tests open it in Debian's chromium; install it only when it is missing
# and apt-get is there (the tests skip, saying why, where it cannot be installed).
browser:
	@[ -x /usr/bin/chromium ] || ! command -v apt-get >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo -n); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "could not install chromium: the browser tests will skip"

demo: install
	$(BIN)/python -m captureq.demo demo-data

# -ra: the summary lists every skip with its reason, and the last line counts them.
# --doctest-modules captureq: the examples in captureq's docstrings run too.
test: install java browser
	$(BIN)/python -m pytest -q -ra tests --doctest-modules captureq

# Everything but the tests marked `slow` (Spark, the moto S3 server, the browser, killed
# exports, package builds, long hypothesis round trips, the README's commands), for the
# edit-test loop. `make test` runs them all.
test-fast: install
	$(BIN)/python -m pytest -q -ra -m 'not slow' tests --doctest-modules captureq

# The smoke tests on every Python 3.10–3.13 found on PATH (python3.1x) or in pyenv: the wheel
# is built once, then each interpreter gets a throwaway venv with captureq[test] installed
# from it (.ci/pythons says which interpreters it found and which it skipped). Needs the network
# for the dependencies; `make test` itself runs on one interpreter. Some: PYTHONS="3.12 3.13".
PYTHONS ?= 3.10 3.11 3.12 3.13
SMOKE := tests/test_versions.py tests/test_records.py tests/test_parse.py tests/test_export.py \
         tests/test_cli.py tests/test_monitor_drift.py tests/test_monitor_baseline.py \
         tests/test_cache.py::test_second_query_is_answered_from_the_cache \
         tests/test_cache.py::test_a_changed_file_is_read_again
test-pythons: install
	rm -rf build/pythons
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation -w build/pythons .
	PYTHONS="$(PYTHONS)" .ci/pythons build/pythons/captureq-*.whl $(SMOKE)

bench: install
	$(BIN)/python -m benchmarks

# The object-store scenario (not part of `make test` nor `make bench`): many small objects on the
# S3 test server behind a proxy adding latency; writes its table into benchmarks/RESULTS.md.
BENCH_S3_ARGS ?= --write
bench-s3: install
	$(BIN)/python -m benchmarks.s3latency $(BENCH_S3_ARGS)

# The long scale run (not part of `make test`): a 10 M-record tree (several GB) scanned and
# exported with peak RSS, and a 30-day S3 listing. Smaller: make soak SOAK_ARGS="--records 2000000".
SOAK_ARGS ?=
soak: install
	$(BIN)/python tests/soak.py $(SOAK_ARGS)

# The linters the suite keeps: ruff's pyflakes, import-order and bugbear rules (pyproject.toml).
lint: install
	$(BIN)/python -m ruff check captureq tests benchmarks conftest.py

clean:
	rm -rf demo-data soak-data .pytest_cache .hypothesis test-artifacts
