# editorbot: set-up, demo and tests. `make demo` and `make test` create .venv when missing.
#
# TORCH_CONSTRAINTS pins torch to this machine kind's local CPU wheel. To keep a torch you
# installed yourself (CUDA, ROCm, another version), run with TORCH_CONSTRAINTS= (empty).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TORCH_CONSTRAINTS ?= constraints/cpu.txt
PIP_C := $(if $(TORCH_CONSTRAINTS),-c $(TORCH_CONSTRAINTS),)
STAMP := $(VENV)/.installed

.PHONY: install demo test bench browser clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml $(TORCH_CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q $(PIP_C) -e '.[test,stems,bench]'
	# tinysoundfont renders General MIDI to arrays. Its one dependency, pyaudio, plays
	# sound (editorbot never does) and does not build here, so it is left out. (`pip
	# check` names that gap; the install itself prints nothing.)
	$(BIN)/python -m pip install -q --no-deps 'tinysoundfont>=0.3'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/editorbot demo

# The whole suite, slow trainings included. 243 s when last measured on 2 free cores.
test: $(STAMP) browser
	@echo "make test: about 5 minutes on 2 free CPU cores (longer while other work shares them);"
	@echo "skip reasons and the 10 slowest tests are listed after the dots."
	$(BIN)/python -m pytest -n 2 -q -rs --durations=10

# The review-page test drives Debian's Chromium. Installed when missing and we may
# (root with apt-get); otherwise that test is skipped and says why.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "warning: could not install chromium; the browser test will be skipped"; \
	  else echo "note: chromium/chromedriver missing and not root; the browser test will be skipped"; fi; \
	fi

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean-venv:
	rm -rf $(VENV)
