# The two commands a new user needs:  `make train`  and  `make test`.
# Both create .venv on first use (scripts/setup.sh). Extra arguments: make train ARGS="trainer=debug"
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medchat-installed

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

.PHONY: setup train test
setup: $(STAMP)

train: $(STAMP)
	$(PY) train.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)
