# The commands a new user runs. Everything installs into .venv, created on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-fast lint demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# -qq: pip's errors (a dependency conflict) still show; its warnings do not (a machine's pip
# configuration may name index folders that do not exist, one warning per package)
$(VENV)/.installed: setup.py | $(BIN)/python
	@echo "installing seg4reg_tf with its test and batch extras into $(VENV) (a few minutes, once) ..."
	$(BIN)/python -m pip install -qq --disable-pip-version-check -e ".[test,batch]"
	touch $@

## install: create .venv and install seg4reg_tf with its test and batch (Apache Beam) extras
install: $(VENV)/.installed

## test: run the test suite (real-data tests run when SEG4REG_AASCE_ROOT is set)
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=15 tests

## test-fast: the suite without the tests marked slow (each over a few seconds: training,
## exports, services); `make test` runs them all
test-fast: install
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not slow" tests

## lint: ruff over the package, tests and benchmarks (settings in pyproject.toml)
lint: install
	$(BIN)/python -m ruff check seg4reg_tf tests bench

## demo: train all five phases on the embedded synthetic data (configs/demo.yaml), evaluate
## on its test split (table and figures), export the result as a SavedModel for TF Serving
## (a new version on every run), then predict four new synthetic radiographs through the
## export, with a report and overlays
demo: install
	$(BIN)/python -m seg4reg_tf.train --phase all --workdir workdirs/demo
	$(BIN)/python -m seg4reg_tf.evaluate --workdir workdirs/demo
	$(BIN)/python -m seg4reg_tf.export --workdir workdirs/demo --out workdirs/demo/exports
	$(BIN)/python -m seg4reg_tf.data.synthetic --out workdirs/demo/samples --train 0 --test 4 --seed 1 --overwrite
	$(BIN)/python -m seg4reg_tf.predict --saved-model workdirs/demo/exports/seg4reg workdirs/demo/samples/data/test \
		--out workdirs/demo/predictions --overlays --tta --overwrite

## clean: remove the virtual environment and caches
clean:
	rm -rf $(VENV) *.egg-info .pytest_cache workdirs
