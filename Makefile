# The commands of the README: `make up`, `make test` and `make compose-test`.
.PHONY: up test compose-test install install-dev gate down

up: install            ## install everything and start the stack on the bundled defaults
	.venv/bin/localsuite up

test: install-dev      ## install everything and run the whole test suite
	scripts/gate.sh

compose-test: install-dev  ## the stack under Docker Compose, for real: a local Docker engine (root)
	deploy/local-engine.sh test

install:
	scripts/install.sh

install-dev:
	scripts/install.sh --dev

gate:
	scripts/gate.sh

down:
	.venv/bin/localsuite down
