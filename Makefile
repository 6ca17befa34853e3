# Thin wrappers. Every target first makes sure .venv exists and is current
# (course/bootstrap.py returns at once when nothing changed).
PY := .venv/bin/python
ARGS ?=

.PHONY: setup demo test test-fast lint lab release

setup:
	@python3 course/bootstrap.py

demo: setup  ## the main job on the embedded default: synthetic data, CPU
	$(PY) -m course demo $(ARGS)

test: setup  ## the whole test suite (lint included); ARGS="-k dicom" narrows it
	$(PY) -m pytest $(ARGS)

test-fast: setup  ## the suite without the tests marked slow (notebooks, grading, installs)
	$(PY) -m pytest -m "not slow" $(ARGS)

lint: setup
	$(PY) -m ruff check .

lab: setup  ## JupyterLab with the nbgrader extension, configured from course/course.toml
	$(PY) -m course lab

release: setup  ## regenerate release/ from source/ (nbgrader); ARGS="--check" only checks
	$(PY) -m course release $(ARGS)
