# Two commands for a fresh machine: `make demo` (main job on real data) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MTMC_DATA ?= ../shared/data
export MTMC_DATA
export YOLO_OFFLINE := 1

.PHONY: venv demo test bench clean

$(BIN)/.installed: requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/python tools/demo.py --data $(MTMC_DATA) --out runs/demo

test: venv
	$(BIN)/python -m pytest -q tests

bench: venv
	$(BIN)/python benchmarks/bench_trackers.py --data $(MTMC_DATA)/mot15

clean:
	rm -rf runs .pytest_cache
