# The two commands of the README: `make up` and `make test`.
.PHONY: up test install install-dev gate down

up: install            ## install everything and start the stack on the bundled defaults
	.venv/bin/localsuite up

test: install-dev      ## install everything and run the whole test suite
	scripts/gate.sh

install:
	scripts/install.sh

install-dev:
	scripts/install.sh --dev

gate:
	scripts/gate.sh

down:
	.venv/bin/localsuite down
