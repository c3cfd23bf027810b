# nwb-facrnn: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What the napari tests need from the system: an X server (Xvfb, started by pytest-xvfb) and
# the xcb libraries Qt's xcb platform plugin loads (without them PySide6 aborts).
SYSTEM_PACKAGES := xvfb libxcb-icccm4 libxcb-keysyms1

.PHONY: install system-deps demo test lint benchmark clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt napari_plugin/pyproject.toml ndx-facrnn/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		-e ./ndx-facrnn -e ".[dev,napari,distributed]" -e ./napari_plugin
	touch $(STAMP)

# Installs the system packages when missing: with apt-get as root (as CI runs), otherwise
# it names them and stops.
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing system packages:$$missing"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
			|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }; \
		else \
			echo "the napari tests need these system packages:$$missing"; \
			echo "install them (e.g. sudo apt-get install$$missing) and run make test again"; \
			exit 1; \
		fi; \
	fi

demo: install
	$(BIN)/nwb-facrnn demo

test: install system-deps
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

benchmark: install
	$(BIN)/python benchmarks/fit_speed.py
	$(BIN)/python benchmarks/batch_size.py
	$(BIN)/python benchmarks/paper_synthetic.py
	$(BIN)/python benchmarks/read_speed.py
	$(BIN)/python benchmarks/write_speed.py
	$(BIN)/python benchmarks/dandi_speed.py
	$(BIN)/python benchmarks/napari_view.py
	$(BIN)/python benchmarks/model_selection.py
	$(BIN)/python benchmarks/ddp_speed.py
	$(BIN)/python benchmarks/scale.py

clean:
	rm -rf $(VENV) build *.egg-info napari_plugin/*.egg-info
