# The two commands: `make run` and `make test` (see README.md).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test bench

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

run: $(VENV)/.installed
	scripts/debian-packages redis-server || echo "redis-server could not be installed: jobs will run in-process."
	scripts/run

test: $(VENV)/.installed-test
	scripts/debian-packages redis-server postgresql chromium
	$(PY) -m pytest -q -n auto --dist loadfile

bench: $(VENV)/.installed-test
	$(PY) bench/catalogue.py
