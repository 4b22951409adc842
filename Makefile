# relocnet: `make demo` runs the main job on the embedded default, `make test` runs the tests.
# Both create ./.venv and install everything on first use (torch 2.14.1 / torchvision 0.29.1
# pinned, detectron2's pure-Python code, the project in editable mode).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.relocnet-installed
DEMO_DIR ?= output/demo

.PHONY: install demo test clean-venv

install: $(STAMP)

$(STAMP): setup.py tools/install_detectron2.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --output $(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
