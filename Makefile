# The two commands: `make demo` runs the main job on the embedded default; `make test` runs the tests
# (`make lint`: the style and type checks).
# Each creates the virtual environment from the lock file (constraints.txt) when it is missing or stale.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv lock clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip check
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

# Coverage of plugins/zoho_store_sync with branches (.coveragerc); the lines and branches no test runs are listed.
# The browser test needs Debian's chromium: installed here on CI, otherwise that test skips and says how.
test: $(STAMP)
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest --cov --cov-branch --cov-report=term-missing:skip-covered

# The house style: ruff (ruff.toml) for lint and format, mypy (mypy.ini) for types. CI runs it.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) -m bench

# Re-resolve every pin from PyPI in a scratch venv; review the diff of constraints.txt before committing.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet -r requirements-dev.txt
	{ echo "# Lock file: every package the project installs, pinned, resolved from PyPI for Python 3.11."; \
	  echo "# Regenerate deliberately with 'make lock' and review the diff. Used as: pip install -r requirements-dev.txt -c constraints.txt"; \
	  .lockenv/bin/pip freeze --exclude-editable; } > constraints.txt
	rm -rf .lockenv

clean:
	rm -rf .demo .airflow bench/results.json bench/results.png
