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
	$(BIN)/python -m pip install -q $(PIP_C) -e '.[test]'
	# tinysoundfont renders General MIDI to arrays; its pyaudio dependency (playback
	# only) does not build here and is not needed.
	$(BIN)/python -m pip install -q --no-deps 'tinysoundfont>=0.3'
	# demucs (optional stems backend): its PyPI metadata pulls packages we never use;
	# at run time it needs only these. It ships no weights (see `editorbot stems --help`).
	$(BIN)/python -m pip install -q --no-deps 'demucs==4.1.0'
	$(BIN)/python -m pip install -q $(PIP_C) einops julius pyyaml safetensors
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/editorbot demo

test: $(STAMP) browser
	$(BIN)/python -m pytest -n 2 -q

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
