# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PORT    ?= 3000
DEMO    ?= demo-data
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export BENTOML_DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: install demo test clean anchor-venv

install: $(STAMP)

# torch first: the exact pin is the CPU wheel on this machine's disk; anything looser pulls CUDA.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nhip demo-data --out $(DEMO) --customers 2000 --days 240 --seed 7
	$(BIN)/nhip ingest $(DEMO)/events.jsonl
	$(BIN)/nhip features build --as-of 2026-08-29
	$(BIN)/nhip train propensity --as-of 2026-08-29 --horizon-days 30
	$(BIN)/nhip train send-time --as-of 2026-08-29
	$(BIN)/nhip audience create likely-buyers --replace --where "propensity_bucket == 'High' and recency_days <= 90"
	$(BIN)/nhip campaign plan --name demo-sale --audience likely-buyers --from 2026-09-01T08:00 \
		--to 2026-09-03T08:00 --budget 200000 --output reports/demo-sale-plan.csv
	$(BIN)/nhip report --out reports
	@test -n "$$NHIP_COLLECTOR_API_KEY" || echo "The collector's key is 'demo' (set NHIP_COLLECTOR_API_KEY to choose one)."
	NHIP_COLLECTOR_API_KEY=$${NHIP_COLLECTOR_API_KEY:-demo} $(BIN)/nhip up --service-port $(PORT) --print-examples

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile  # two workers; a file's tests share one

# Only for benchmarks/cdnow_clv.py: PyMC-Marketing, the CLV anchor, in an environment of its own (its stack
# pins its own numpy, pandas and scipy). Not needed by the product or the tests.
anchor-venv: .venv-anchor/.installed

.venv-anchor/.installed:
	test -x .venv-anchor/bin/python || $(PY) -m venv .venv-anchor
	.venv-anchor/bin/pip install --quiet pymc-marketing==0.19.2
	touch $@

clean:
	rm -rf var mlruns/mlflow.db mlruns/artifacts reports $(DEMO)
