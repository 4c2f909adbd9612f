# Two commands from a fresh clone:  make demo  (install + run)  and  make test  (install test needs + whole suite).
# the offline CPU torch wheel is built for 3.11: a python3 that is another version takes python3.11 where there is one.
# `make PYTHON=...` picks another; a PYTHON in the environment (node-gyp set-ups export one) does not: := not ?=
PYTHON := $(shell command -v python3.11 || echo python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install install-test demo test lint train clean venv-works constraints

# pip byte-compiles one file at a time (78 of its 114 s on 2 cores); compileall uses every core. It fails on the one
# file torch ships in Python 3.12 syntax, which pip leaves out silently: hence the || true.
# constraints.txt holds the versions the suite last passed with, so a clone installs those, not whatever is newest.
# Marked as make's before venv runs (a venv stopped halfway is still make's to redo); a half-made one (an install that
# failed) is removed, as venv over it keeps its bin/python (.installed alone: one made before .packages existed, which
# is installed over). Installed (.packages) apart from the gallery step after it, whose failure (a cache folder it
# cannot write: JEPA_LENS_CACHE names another) then reruns alone, not the whole download.
$(VENV)/.packages: requirements.txt constraints.txt | venv-works
	@if [ -d $(VENV) ] && [ ! -e $@ ] && [ ! -e $(VENV)/.installed ] && [ ! -e $(VENV)/.made-by-make ]; then \
		echo "$(VENV) is not one make made (uv, an IDE or python -m venv make one there too): move it away or" \
			"rm -rf $(VENV), then rerun"; \
		exit 1; fi
	test -e $@ || test -e $(VENV)/.installed || rm -rf $(VENV)  # half-made (see above)
	mkdir -p $(VENV) && touch $(VENV)/.made-by-make
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -c constraints.txt -r requirements.txt
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	touch $@

$(VENV)/.installed: $(VENV)/.packages
	$(PY) -m jepa_demo.gallery --checkpoint checkpoints/default  # reads its shipped gallery (a stale one or a GPU's: built)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-test.txt
	touch $@

# After changing requirements*.txt (and the constraints.txt line of a package whose pin no longer fits) and `make
# install-test`: record what was installed, then `make test` (it fails on a requirement constraints.txt lacks). Not
# torch, pinned already (and installed as 2.13.0+cpu here, a version PyPI does not have). Replaced only when a version
# changed: a newer file would make the next make reinstall everything.
constraints:
	@test -e $(VENV)/.installed-test || \
		{ echo "no $(VENV) with the test needs to read versions from: make install-test first"; exit 1; }
	{ echo "# Written by make constraints: the versions make test last passed with. make install installs these."; \
	  $(PY) -m pip freeze --exclude torch; } > constraints.txt.new || { rm -f constraints.txt.new; exit 1; }
	if cmp -s constraints.txt.new constraints.txt; then rm constraints.txt.new; else mv constraints.txt.new constraints.txt; fi

# A Python without ensurepip (Debian's and Ubuntu's, until python3-venv is installed) makes a .venv with no pip in it
# and stops: say what to install instead. An installed .venv whose Python is gone (bin/python a dangling link) or is
# another version now (a python3 upgraded from 3.11 to 3.12 looks for packages in lib/python3.12) cannot be repaired
# in place: say so, instead of a bare "No such file or directory" or "No module named torch" from every command.
venv-works:
	@if [ ! -e $(VENV)/.packages ] && ! $(PYTHON) -c "import sys; raise SystemExit(sys.version_info < (3, 11))" \
		2>/dev/null; then \
		echo "$(PYTHON) ($$($(PYTHON) --version 2>/dev/null || echo not found)) is not Python 3.11 or newer: install" \
			"python3.11 (or name one: make PYTHON=/path/to/python3.11 ...), then rerun"; \
		exit 1; fi
	@if [ ! -e $(VENV)/.packages ] && ! $(PYTHON) -c "import ensurepip" 2>/dev/null; then \
		echo "$(PYTHON) cannot make a virtual environment here: install its venv module (on Debian or Ubuntu:" \
			"sudo apt install $$($(PYTHON) -c 'import sys; print("python3.%d-venv" % sys.version_info[1])'))," \
			"then rerun"; \
		exit 1; fi
	@if { [ -e $(VENV)/.packages ] || [ -e $(VENV)/.installed ]; } && ! $(PY) -c "import os, sysconfig; \
		raise SystemExit(not os.path.isdir(sysconfig.get_paths()['purelib']))" 2>/dev/null; then \
		echo "$(VENV) no longer works (its Python is gone, or is another version now): rm -rf $(VENV), then rerun"; \
		exit 1; fi

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# The app on http://127.0.0.1:7860 (`python -m jepa_demo.demo` is the terminal tour).
demo: install
	$(PY) app.py

# Two pytest-xdist workers, one file each at a time: a third of a one-process run's time went to waiting on servers,
# subprocesses and file lifetimes, with a core idle (tests/conftest.py splits the cores between the workers)
# Hypothesis keeps its examples and caches in ./.hypothesis unless told otherwise: in .venv, not the project's root
test: install-test
	HYPOTHESIS_STORAGE_DIRECTORY=$(VENV)/.hypothesis $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder

lint: install-test
	$(VENV)/bin/ruff check .

# Retrain the shipped default checkpoint (16 minutes on 2 CPU cores) and the gallery it carries, on the CPU even
# where there is a GPU: the recipe is the CPU one, and a GPU's gallery (bfloat16) is not the one CPUs look for
train: install
	$(PY) -m train --config train/configs/cpu.yaml out_dir=checkpoints/default device=cpu
	$(PY) -m jepa_demo.gallery --checkpoint checkpoints/default --ship

clean:  # caches only: runs/ holds trained models
	rm -rf .pytest_cache .ruff_cache
