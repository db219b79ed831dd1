# Tessera: the two commands a new machine needs are `make run` and `make test`.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

NPM_STAMP := node_modules/.package-lock.json

help:
	@echo "make run        install, start the embedded Postgres, migrate, serve on http://127.0.0.1:8080"
	@echo "make test       lint, build and run every test against a real Postgres and Nginx"
	@echo "make stack      Postgres, two auth instances, notes and Nginx (TLS on https://127.0.0.1:8443)"
	@echo "make stack-down stop what make stack started"
	@echo "make bench      benchmark every hot route against this machine's ceilings (SCENARIO=name for one)"
	@echo "make bench-peer Tessera side by side with the SimpleJWT stack (../shared/peer-drf; QUICK=1 for 2 s runs)"
	@echo "make keys-list | keys-rotate | keys-rotate-now   operator key commands"
	@echo "make keys-revoke KID=<kid> | keys-rewrap NEW_KEK_FILE=<file>   key compromise, KEK rotation"

$(NPM_STAMP): package.json package-lock.json services/*/package.json bench/package.json
	npm ci --no-audit --no-fund
	@touch $(NPM_STAMP)

install: $(NPM_STAMP)

# Rebuild only when a source or config changed, so a second `make run` starts in seconds.
BUILD_STAMP := services/auth/dist/.build-stamp
SOURCES := $(shell find services bench -path '*/node_modules' -prune -o -path '*/dist' -prune -o \( -name '*.ts' -o -name 'package.json' -o -name 'tsconfig*.json' \) -print 2>/dev/null) tsconfig.json

$(BUILD_STAMP): $(NPM_STAMP) $(SOURCES)
	npm run build
	@mkdir -p $(dir $@)
	@touch $@

build: $(BUILD_STAMP)

lint: install
	npm run lint

run: build
	@echo "Try: curl -s http://127.0.0.1:8080/healthz   (more curls in README.md)"
	node services/auth/dist/server.js

test: build lint
	npm test

stack: build
	bash scripts/stack.sh up

stack-down:
	bash scripts/stack.sh down

bench: build
	node bench/run.mjs $(if $(SCENARIO),--scenario $(SCENARIO),)

bench-peer: build
	node bench/run.mjs --peer $(if $(QUICK),--quick,)

keys-list: build
	node services/auth/bin/tessera.js keys list

keys-rotate: build
	node services/auth/bin/tessera.js keys rotate

keys-rotate-now: build
	node services/auth/bin/tessera.js keys rotate --now

keys-revoke: build
	@test -n "$(KID)" || { echo "usage: make keys-revoke KID=<kid>"; exit 2; }
	node services/auth/bin/tessera.js keys revoke "$(KID)"

keys-rewrap: build
	@test -n "$(NEW_KEK_FILE)" || { echo "usage: make keys-rewrap NEW_KEK_FILE=<file>"; exit 2; }
	node services/auth/bin/tessera.js keys rewrap --new-kek-file "$(NEW_KEK_FILE)"

clean:
	rm -rf services/*/dist bench/dist services/*/.tap .tap

.PHONY: help install build lint run test stack stack-down bench bench-peer keys-list keys-rotate keys-rotate-now keys-revoke keys-rewrap clean
