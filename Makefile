# The two front-door commands: `make demo` (xmodal demo: fetch emoji, extract, train, evaluate,
# report) and `make test`. Both set up .venv first (once; a
# repeat run only re-installs when pyproject.toml or constraints.txt changed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Optional: a folder holding the two emoji npm tarballs, instead of fetching them with npm.
EMOJI_SOURCE ?=

.PHONY: setup test test-fast demo clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "xmodal needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

# The inner loop: lint and the tests not marked slow (about a minute on 2 cores).
test-fast: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -m "not slow"

# The search page's browser test drives Debian's Chromium (never a downloaded browser); installed
# here when apt-get can (root), else that one test skips and says why.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get install -y -q chromium >/dev/null 2>&1 && echo "installed chromium for the browser test"; } || \
		echo "no chromium: the browser test will skip (apt-get install chromium to run it)"

demo: $(STAMP)
	$(BIN)/xmodal demo $(if $(EMOJI_SOURCE),--path $(EMOJI_SOURCE))

clean:
	rm -rf $(VENV) src/*.egg-info .pytest_cache
