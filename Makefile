# Thin wrappers. Every target first makes sure .venv exists and is current
# (course/bootstrap.py returns at once when nothing changed).
PY := .venv/bin/python
ARGS ?=
# Two pytest-xdist workers, one per core: in one process the suite kept 1.2 of the 2 cores
# busy (31 min, 37 CPU-min), the rest of the time waiting on kernels and subprocesses. A
# module stays on one worker (its fixtures are built once). WORKERS= runs one process.
WORKERS ?= -n 2 --dist loadfile

.PHONY: setup demo test test-fast lint lab release

setup:
	@python3 course/bootstrap.py

demo: setup  ## the main job on the embedded default: synthetic data, CPU
	$(PY) -m course demo $(ARGS)

test: setup  ## the whole test suite (lint included); ARGS="-k dicom" narrows it
	$(PY) -m pytest $(WORKERS) $(ARGS)

test-fast: setup  ## the suite without the tests marked slow (notebooks, grading, installs)
	$(PY) -m pytest $(WORKERS) -m "not slow" $(ARGS)

lint: setup
	$(PY) -m ruff check .

lab: setup  ## JupyterLab with the nbgrader extension, configured from course/course.toml
	$(PY) -m course lab

release: setup  ## regenerate release/ from source/ (nbgrader); ARGS="--check" only checks
	$(PY) -m course release $(ARGS)
