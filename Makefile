# nwb-facrnn: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint benchmark clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/nwb-facrnn demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

benchmark: install
	$(BIN)/python benchmarks/fit_speed.py
	$(BIN)/python benchmarks/paper_synthetic.py
	$(BIN)/python benchmarks/read_speed.py
	$(BIN)/python benchmarks/write_speed.py
	$(BIN)/python benchmarks/dandi_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
