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

.PHONY: install demo test test-fast bench clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml $(TORCH_CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q $(PIP_C) -e '.[test]'
	# tinysoundfont renders General MIDI to arrays; its pyaudio dependency (playback
	# only) does not build here and is not needed.
	$(BIN)/python -m pip install -q --no-deps 'tinysoundfont>=0.3'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/editorbot demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean-venv:
	rm -rf $(VENV)
