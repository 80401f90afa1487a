# The two commands a newcomer needs:
#   make lab    set everything up if needed, then open the course in JupyterLab
#   make test   set everything up if needed, then run the whole test suite (what CI runs)
#
# Everything lives in .venv (created with Python >= 3.11); pins come from constraints.txt.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Extra pytest arguments, e.g. `make test ARGS="-k returns -x"`.
ARGS   ?=
# Parallel test workers (pytest-xdist); `make test JOBS=0` runs everything in one process.
JOBS   ?= auto
# Threads per test process: 1 when the workers run in parallel, all cores with JOBS=0.
TEST_THREADS ?= $(if $(filter 0,$(JOBS)),$(shell nproc 2>/dev/null || echo 2),1)
# `make notebooks FORCE=1` backs up notebooks you edited, then regenerates them.
FORCE  ?=

.PHONY: setup notebooks lab test bench bench-trl lock clean release grade

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "error: no python3.11 or python3 on PATH; install Python 3.11 first" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python >= 3.11 is needed, found " + sys.version.split()[0] + " at " + sys.executable)'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

notebooks: $(STAMP)
	$(PY) -m course_lib.build $(if $(FORCE),--force)

lab: notebooks
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" \
		$(if $(DISPLAY)$(filter Darwin,$(shell uname -s)),,--no-browser) \
		$(if $(filter 0,$(shell id -u)),--allow-root)

# The test command: builds a throw-away copy of every notebook under build/test
# (your own notebooks are never touched), then runs the unit tests, executes every
# chapter and solution notebook under nbval, and runs the exercise meta-test.
# One BLAS/OpenMP thread per process: the workers already fill the cores, and torch
# processes that each spin several threads on the same cores slow each other down.
test: $(STAMP)
	rm -rf build/test
	$(PY) -m course_lib.build --out build/test
	COURSE_FAST=1 OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest tests build/test/notebooks build/test/solutions \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
		-n $(JOBS) --dist loadscope --durations=15 $(ARGS)

# Instructors: release the student notebooks (all chapters, or CHAPTER=N), and
# grade a folder laid out as SUBMISSIONS/<student>/<assignment>/<notebook>.ipynb.
release: $(STAMP)
	$(PY) -m course_lib.grading release $(if $(CHAPTER),--chapter $(CHAPTER),--all)

grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=path/to/submitted" >&2; exit 1; }
	$(PY) -m course_lib.grading grade $(SUBMISSIONS) --gradebook build/grading/gradebook.csv --feedback build/grading/feedback

# The *_vs_trl.py benchmarks need TRL, which the course does not install:
# run `bash benchmarks/trl_setup.sh` once, then `make bench-trl`.
bench: $(STAMP)
	@for script in benchmarks/bench_*.py; do case $$script in *_vs_trl.py) continue;; esac; \
		echo "== $$script"; $(PY) $$script || exit 1; done

bench-trl:
	@test -x build/trl-venv/bin/python || { echo "run 'bash benchmarks/trl_setup.sh' first (it builds build/trl-venv)" >&2; exit 1; }
	@for script in benchmarks/bench_*_vs_trl.py; do echo "== $$script"; build/trl-venv/bin/python $$script || exit 1; done

# Re-pin every package after editing pyproject.toml's dependencies.
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install --quiet torch==2.13.0 -e '.[test,instructor]'
	{ sed -n '1,3p' constraints.txt; build/lock-venv/bin/python -m pip freeze --exclude-editable \
		| sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/'; } > constraints.new && mv constraints.new constraints.txt
	@echo "constraints.txt updated; now update the pins in environment.yml (make test checks they agree)"

clean:
	rm -rf build .pytest_cache
