# Two commands for a fresh machine: `make demo` (main job on real data) and `make test`.
# Both install the project (pyproject.toml, pinned) into .venv first; `mtmc` is then on .venv/bin.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MTMC_DATA ?= $(abspath ../shared/data)
export MTMC_DATA
export YOLO_OFFLINE := 1

.PHONY: venv demo test bench bench-terrace reid-model clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,ray]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/mtmc demo --data $(MTMC_DATA) --out runs/demo

test: venv
	$(BIN)/python -m pytest -q tests

# the best offline ReID model: STA-OSNet fine-tuned on CUHK03 (~30 min on 2 CPU cores), into runs/cache (never git)
reid-model: venv
	$(BIN)/mtmc reid-model

bench-terrace: venv
	$(BIN)/mtmc demo --scene terrace --data $(MTMC_DATA) --out runs/terrace

bench: venv
	$(BIN)/python benchmarks/bench_trackers.py --data $(MTMC_DATA)/mot15

clean:
	rm -rf runs .pytest_cache
