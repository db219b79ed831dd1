# Tessera: the two commands a new machine needs are `make run` and `make test`.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# The runtime: the Node.js LTS line in .nvmrc (24). A machine whose node is
# older gets that line from the npm registry (the `node` package ships the
# linux-x64 binary) under .tools/, first on PATH for every target below.
NODE_MAJOR := $(shell cat .nvmrc)
NODE_PIN := 24.21.0
SYSTEM_NODE_MAJOR := $(shell node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
ifeq ($(shell test $(SYSTEM_NODE_MAJOR) -ge $(NODE_MAJOR) && echo new),new)
NODE_RUNTIME :=
else
NODE_RUNTIME := .tools/node/node_modules/.bin/node
export PATH := $(CURDIR)/.tools/node/node_modules/.bin:$(PATH)
endif

NPM_STAMP := node_modules/.package-lock.json

help:
	@echo "(runtime: Node.js $(NODE_MAJOR) LTS; fetched into .tools/ when the machine's node is older)"
	@echo "make run        install, start the embedded Postgres, migrate, serve on http://127.0.0.1:8080"
	@echo "make test       lint, build and run every test against a real Postgres and Nginx"
	@echo "make test-fast  build and run the in-process tests only (no spawned process, Nginx or Python; coverage off)"
	@echo "make stack      Postgres, two auth instances, notes and Nginx (TLS on https://127.0.0.1:8443)"
	@echo "make stack-down stop what make stack started"
	@echo "make bench      benchmark every hot route against this machine's ceilings (SCENARIO=name for one)"
	@echo "make bench-peer Tessera side by side with the SimpleJWT stack (../shared/peer-drf; QUICK=1 for 2 s runs)"
	@echo "make keys-list | keys-rotate | keys-rotate-now   operator key commands"
	@echo "make keys-revoke KID=<kid> | keys-rewrap NEW_KEK_FILE=<file>   key compromise, KEK rotation"
	@echo "make install | build | lint | clean   npm ci; compile to dist/; type checks, eslint, dependency rules, compose lint; remove dist/"

ifneq ($(NODE_RUNTIME),)
$(NODE_RUNTIME):
	@echo "node $$(node --version 2>/dev/null || echo none) is older than $(NODE_MAJOR): installing node@$(NODE_PIN) from the npm registry into .tools/"
	@mkdir -p .tools/node
	@# The node package's install script puts the binary in place; npm 11 asks for it to be allowed, and --prefix does not read ours.
	@printf '{"private":true,"allowScripts":{"node":true}}\n' > .tools/node/package.json
	npm install --prefix .tools/node --no-save --no-package-lock --no-audit --no-fund node@$(NODE_PIN)
endif

$(NPM_STAMP): package.json package-lock.json packages/*/package.json services/*/package.json bench/package.json $(NODE_RUNTIME)
	npm ci --no-audit --no-fund
	@touch $(NPM_STAMP)

install: $(NPM_STAMP)

node-version: $(NPM_STAMP)
	@node --version

# Rebuild only when a source or config changed, so a second `make run` starts in seconds.
# Tests are not built (lint type-checks them), so editing one does not rebuild;
# tsc is incremental, its state in each dist/ (gone with it on `make clean`).
BUILD_STAMP := services/auth/dist/.build-stamp
SOURCES := $(shell find packages services bench -path '*/node_modules' -prune -o -path '*/dist' -prune -o -path '*/test' -prune -o \( -name '*.ts' -o -name 'package.json' -o -name 'tsconfig*.json' \) -print 2>/dev/null) tsconfig.json

$(BUILD_STAMP): $(NPM_STAMP) $(SOURCES)
	npm run build
	@mkdir -p $(dir $@)
	@touch $@

build: $(BUILD_STAMP)

lint: install
	npm run lint

run: build
	@echo "Try: curl -s http://127.0.0.1:$${PORT:-8080}/healthz   (more curls in README.md)"
	node services/auth/dist/server.js

test: build lint
	npm test

# The in-process lane, for the edit-test loop: every test file outside
# test/e2e/ (nothing spawned: no server process, CLI, Nginx or Python), on
# the same real Postgres, coverage off. `make test` still runs everything.
test-fast: build
	node scripts/with-test-db.mjs node scripts/test-workspaces.mjs test:fast

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

.PHONY: help node-version install build lint run test test-fast stack stack-down bench bench-peer keys-list keys-rotate keys-rotate-now keys-revoke keys-rewrap clean
