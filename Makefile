# The two commands a newcomer needs: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: venv test test-unit lint demo clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test-unit: venv
	$(BIN)/pytest -q tests/unit

# Every tier; a tier skips only with a printed reason when its prerequisite cannot exist here.
test: lint test-unit

demo: venv
	$(BIN)/python -m faultmesh.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
