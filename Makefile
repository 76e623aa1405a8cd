# lora-course: every target sets up .venv on first use (idempotent; a stamp keyed on the
# contents of pyproject.toml and constraints.txt skips the install when nothing changed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEPS   := $(shell cat pyproject.toml constraints.txt 2>/dev/null | sha256sum | cut -c1-16)
STAMP  := $(VENV)/.installed-$(DEPS)
KERNEL := lora-course
export PIP_DISABLE_PIP_VERSION_CHECK := 1
CHROMIUM ?= /usr/bin/chromium
export LORA_COURSE_CHROMIUM := $(CHROMIUM)

.PHONY: help setup lab workspace release grade test lint unit notebooks execute doctor clean \
	slides test-browser test-limits chromium bubblewrap bench bench-real-scale bench-gpu \
	test-real-path cpu-per-file

help:
	@echo "make lab       set up .venv and open the course (student notebooks in workspace/)"
	@echo "make workspace release the student notebooks missing from workspace/ (keeps edits)"
	@echo "make release   write every student notebook into release/ (solutions removed)"
	@echo "make grade SUBMISSIONS=DIR   grade a folder of submissions into gradebook.csv"
	@echo "make bubblewrap  install the grading sandbox (bwrap) where apt-get works"
	@echo "make test      set up .venv, then lint, unit tests and every notebook under nbval"
	@echo "               (in parallel, one worker per CPU plus one; WORKERS=1 for one process)"
	@echo "make slides    build an offline reveal.js deck per notebook in build/slides/"
	@echo "               (SOLUTIONS=1: the exercises' instructor decks, with the solutions)"
	@echo "make test-browser  decks and JupyterLab checked in headless Chromium"
	@echo "make test-limits   exercise 3's largest allowed sweep graded with the default limits (slow)"
	@echo "make cpu-per-file  the make test run with each file's CPU-seconds recorded and summed"
	@echo "make bench     benchmarks: ours vs PEFT/bitsandbytes, LoRA vs full, notebook times"
	@echo "make bench-real-scale  a shape-true Llama-3.2-1B measured on the CPU (tens of minutes)"
	@echo "make bench-gpu the lesson's QLoRA at 8B on a GPU (skips without CUDA)"
	@echo "make test-real-path  notebooks 03, 06 and finetune on a shape-true model (minutes)"
	@echo "make execute   re-run every master notebook top to bottom and save its outputs"
	@echo "make doctor    print versions and what works on this machine"

# uv installs the pinned set in about 20 s with a cold cache (pip took 74 s here, one core
# unpacking and byte-compiling); the byte-code is compiled on every core, since the grading
# sandbox's read-only venv cannot write it later. uv does not read pip's configuration, so the
# local wheel folders pip is pointed at (find-links: here, the CPU build of torch) are passed on.
# etc/pip_sources.py leaves out the local sources that are not on this machine, for uv and for
# the pip that installs uv (pip warns about each one, and a newcomer can do nothing about it).
# If uv fails, pip installs the same pins.
$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python etc/pip_sources.py pip uv install --quiet -c constraints.txt uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode \
	  $$($(BIN)/python etc/pip_sources.py find-links) -c constraints.txt -e '.[dev]' \
	  || $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@# The kernel lives inside this checkout's .venv (--sys-prefix), where the JupyterLab of
	@# `make lab` finds it first; a per-user kernel would be repointed by every other clone.
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (lora-course)" >/dev/null
	@# The course works offline: no news feed or update check asking the network on every start.
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@cp etc/jupyterlab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP)

# JupyterLab refuses to run as root unless told; root is normal in containers and CI.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

# Learners work in workspace/ (ignored by git): released there on first use, never overwritten.
# notebooks/ stays the instructors' master copy, with the solutions.
lab: workspace
	$(BIN)/jupyter lab --notebook-dir=workspace --ServerApp.default_url=/lab/tree/01_lora_layer.ipynb $(ALLOW_ROOT)

workspace: setup
	$(BIN)/python -m lora_course release --out workspace --missing-only

release: setup
	$(BIN)/python -m lora_course release --out release

SUBMISSIONS ?= submissions
GRADEBOOK   ?= gradebook.csv
JOBS        ?= 2
grade: setup
	$(BIN)/python -m lora_course grade $(SUBMISSIONS) --out $(GRADEBOOK) --jobs $(JOBS)

lint: setup
	$(BIN)/ruff check lora_course tests notebooks benchmarks etc
	$(BIN)/ruff format --check lora_course tests notebooks benchmarks etc

# Test files and notebooks run in parallel, one worker per CPU plus one (WORKERS=1 for one
# process): much of the suite waits (kernels starting, grading timeouts, subprocesses), and the
# extra worker fills those waits; on 2 cores 3 workers took 237 s where 2 took 245 s.
# --dist loadfile keeps each file, and each notebook's cells, in one worker and in order, which
# nbval needs. Files start slowest first (tests/conftest.py: SLOWEST_FIRST), not by
# test count. A new test file or notebook joins by being there. --durations shows the slowest.
WORKERS  ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))
PARALLEL := -n $(WORKERS) --dist loadfile --no-loadscope-reorder --durations=10
# One torch thread per test process and notebook kernel: the workers already fill the cores, and
# two threads waiting on each other on a busy machine made notebook 03's training cells take
# 5-14 minutes instead of seconds (measured under load).
unit notebooks test: export OMP_NUM_THREADS := 1

unit: setup
	$(BIN)/python -m pytest $(PARALLEL) tests

notebooks: setup
	$(BIN)/python -m pytest $(PARALLEL) --nbval-lax --nbval-current-env notebooks

# One pytest run for unit tests, browser tests (tests/browser) and notebooks, so CI reads one
# closing line; `chromium` first, so the browser tests run instead of skipping.
SUITE := tests --nbval-lax --nbval-current-env notebooks
test: lint chromium bubblewrap
	$(BIN)/python -m pytest $(PARALLEL) -rs $(SUITE)

# Where make test's CPU goes: the same run with benchmarks/cpu_per_file.py recording each test's
# CPU-seconds (its worker's and its reaped children's), then one line per file, most CPU first.
cpu-per-file: export OMP_NUM_THREADS := 1
cpu-per-file: setup chromium bubblewrap
	rm -rf build/cpu
	LORA_COURSE_CPU_DIR=build/cpu PYTHONPATH=benchmarks \
	  $(BIN)/python -m pytest -p cpu_per_file $(PARALLEL) $(SUITE)
	$(BIN)/python benchmarks/cpu_per_file.py build/cpu

# Exercise decks show the task as learners get it; SOLUTIONS=1 builds the instructor's decks
# (NN_exercise_N.solutions.slides.html) with the reference solutions.
slides: setup
	$(BIN)/python -m lora_course slides --out build/slides $(if $(SOLUTIONS),--solutions)

# Debian's chromium for the browser tests, installed once where apt-get is usable (as root, as
# in CI); elsewhere the browser tests skip and say why. Playwright's own download never works here.
chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser tests (once, about a minute)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	  || { echo "apt-get install chromium failed: install it by hand to run the browser tests"; exit 1; }; \
	else \
	  echo "NOTE: $(CHROMIUM) is missing and apt-get is not usable here (needs root):"; \
	  echo "      the browser tests will be skipped; install Debian's chromium to run them."; \
	fi

# bubblewrap (bwrap) sandboxes each graded submission's kernel (lora_course/classroom/sandbox.py),
# installed once where apt-get is usable; elsewhere `grade` refuses unless given --no-sandbox.
bubblewrap:
	@if command -v bwrap >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's bubblewrap for the grading sandbox (once, seconds)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null \
	  || { echo "apt-get install bubblewrap failed: install it by hand to grade sandboxed"; exit 1; }; \
	else \
	  echo "NOTE: bwrap is missing and apt-get is not usable here (needs root): grading and its"; \
	  echo "      tests need it; install your system's bubblewrap package."; \
	fi

test-browser: setup chromium
	$(BIN)/python -m pytest tests/browser -rs

# Exercise 3's largest allowed sweep graded under the grader's default limits (about 3 minutes on
# an idle 2-core machine): not in `make test`; run it after changing the limits or the sweep.
test-limits: setup bubblewrap
	LORA_COURSE_LONG_TESTS=1 $(BIN)/python -m pytest -s tests/test_grading_limits.py

# Ratios measured side by side in one run (see benchmarks/run.py); the table is also written to
# build/bench.md. Not part of `make test`: timings belong in benchmarks, not in tests.
bench: setup
	$(BIN)/python benchmarks/run.py --out build/bench.md

# A shape-true Llama-3.2-1B (real layout, random weights; built once, cached) measured on the
# CPU: footprints per scheme and LoRA/QLoRA steps against the calculators, one process at a
# time (about 5 GB of memory at most, tens of minutes). Writes data/measurements/.
bench-real-scale: setup
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/real_scale.py --model Llama-3.2-1B

# The learner's path after the course, on a CPU: notebooks 03 and 06 and `finetune` with
# LORA_COURSE_MODEL set to a local shape-true folder (Llama-3.2-1B's layout scaled down, random
# weights). Minutes, so not in `make test`.
test-real-path: setup
	LORA_COURSE_REAL_PATH=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -rs tests/real_path

# The lesson's QLoRA at real size on a GPU (Llama-3.1-8B and 3.2-1B, shape-true); says so and
# stops when torch sees no GPU. `python benchmarks/gpu.py --device cpu --model ...` runs it on
# a CPU with a small model.
bench-gpu: setup
	$(BIN)/python benchmarks/gpu.py

execute: setup
	$(BIN)/python -m lora_course execute notebooks/*.ipynb

doctor: setup
	$(BIN)/python -m lora_course doctor

clean:
	rm -rf $(VENV) build .pytest_cache
