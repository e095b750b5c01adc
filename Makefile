# Two commands: `make run` and `make test`. Each sets up .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test test-fast lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the project metadata changed.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

# Browser tests use a system Chromium when there is one, else Playwright's own.
$(VENV)/.browser: $(STAMP)
	@if [ -x /usr/bin/chromium ] || [ -n "$$CHROMIUM_PATH" ]; then \
	  echo "Using system Chromium"; \
	else \
	  $(BIN)/playwright install chromium; \
	fi
	@touch $@

run: $(STAMP)
	$(BIN)/inbox run

demo: $(STAMP)
	$(BIN)/inbox demo

test: $(STAMP) $(VENV)/.browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
