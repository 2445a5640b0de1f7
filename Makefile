# The README's commands. Each one creates the virtualenv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install java browser demo test test-fast bench bench-s3 soak lint clean

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
test: install java browser
	$(BIN)/python -m pytest -q -ra

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

clean:
	rm -rf demo-data soak-data .pytest_cache .hypothesis test-artifacts
