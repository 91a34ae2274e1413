# The README's two commands: `make demo` (main job on a bundled example) and `make test`.
# Both create .venv/ first when it is missing.
VENV := .venv/bin
EXAMPLE ?= examples/resnet8_cifar.nash
# the example asks for 704 candidates (evolution 64 x 20), about a minute of zero-shot
# scoring on 2 cores; `make demo SEARCH_SECONDS=N` caps the search at N seconds
SEARCH_SECONDS ?=

.PHONY: setup demo test lint slow

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/nashc compile $(EXAMPLE) --target u250 $(if $(SEARCH_SECONDS),--search-seconds $(SEARCH_SECONDS)) -o out/$(notdir $(basename $(EXAMPLE)))

lint: setup
	$(VENV)/ruff check .
	bash scripts/mypy-tree.sh
	$(VENV)/mypy

test: lint
	$(VENV)/python -m pytest -q

slow: setup
	$(VENV)/python -m pytest -q -m slow
