# Two entry points for a fresh machine: `make demo` and `make test`. Everything else is a step they call.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch: the CPU wheel 2.13.0 on our machines. A GPU user runs, e.g.,
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128
# and a CPU-only user elsewhere TORCH_INDEX=https://download.pytorch.org/whl/cpu (see README).
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.grnformer-installed
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: setup fetch browser test demo clean

$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/pip install -q -r requirements.lock
	# RegDiffusion baseline: its declared requirements would pull another torch; what it needs is already here.
	$(BIN)/pip install -q --no-deps regdiffusion==0.2.3
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

setup: $(STAMP)

# Fetch every data resource into the cache (GRNFORMER_CACHE, default ~/.cache/grnformer); offline afterwards.
fetch: setup
	$(BIN)/grnformer fetch

# The report test opens the demo report in headless Chromium (Debian package `chromium`).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "installing Chromium for the report test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	    echo "could not install chromium (need root?): the report test will fail; install it by hand"; }

test: fetch browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no test"; exit 0; fi; exit $$rc

demo: fetch
	$(BIN)/grnformer demo --out $(DEMO_OUT)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
