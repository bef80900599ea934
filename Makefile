# otlp_lab: two commands for a new user.
#   make demo   set up .venv, load the bundled TrainTicket capture, print a summary, write out/report.html
#   make test   set up .venv if needed, lint (ruff), run the whole test suite (notebooks included, via nbval)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lab bench lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("otlp_lab needs Python 3.11+; found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/otlp-lab demo --db out/demo.duckdb --report out/report.html

test: $(STAMP)
	$(VENV)/bin/ruff check otlp_lab tests benchmarks notebooks datasets
	$(PY) -m pytest tests --nbval-lax notebooks -p no:cacheprovider

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) benchmarks/bench_load.py
	$(PY) benchmarks/bench_sim.py --requests 100000
	$(PY) benchmarks/bench_receiver.py
	$(PY) benchmarks/bench_analysis.py

lint: $(STAMP)
	$(VENV)/bin/ruff check otlp_lab tests benchmarks notebooks datasets

clean:
	rm -rf out .pytest_cache .hypothesis
