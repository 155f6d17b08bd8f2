# The two commands a newcomer needs: `make run` and `make test`. Everything else is for developers.
# When DATABASE_URL is unset, a private PostgreSQL cluster is started under .local/ (scripts/pg.sh).

GO        ?= go
FUZZTIME  ?= 20s
BENCHTIME ?= 1s
export GOFLAGS ?= -buildvcs=false

VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)

.PHONY: run test bench fuzz lint build clean db-up db-stop db-status db-destroy help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: ## start PostgreSQL, the platform simulator, the example app and the server in front of it, two demo schools
	@scripts/run.sh

test: ## run every test with the race detector, against a real PostgreSQL
	@DATABASE_URL="$${DATABASE_URL:-$$(scripts/pg.sh up)}" && export DATABASE_URL && \
	  start=$$(date +%s) && \
	  $(GO) test -race -count=1 -timeout 15m ./... && \
	  echo "make test: all packages passed in $$(( $$(date +%s) - start ))s"

bench: ## run the benchmarks
	@DATABASE_URL="$${DATABASE_URL:-$$(scripts/pg.sh up)}" && export DATABASE_URL && \
	  $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

fuzz: ## run every fuzz target for FUZZTIME each (the seeds also run in `make test`)
	@scripts/fuzz.sh $(FUZZTIME)

lint: ## gofmt, go vet, and go.mod/go.sum tidy
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(GO) vet ./...
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

build: ## build bin/server, bin/platformsim, bin/exampleapp and bin/demosync (make run's step 4)
	@mkdir -p bin
	@$(GO) build -ldflags "$(LDFLAGS)" -o bin/server ./cmd/server
	@$(GO) build -o bin/platformsim ./cmd/platformsim
	@$(GO) build -o bin/exampleapp ./cmd/exampleapp
	@$(GO) build -o bin/demosync ./cmd/demosync
	@echo "built bin/server ($(VERSION)), bin/platformsim, bin/exampleapp and bin/demosync"

db-up: ## start the private PostgreSQL and print its URL (password masked; scripts/pg.sh url has it)
	@scripts/pg.sh show

db-stop: ## stop the private PostgreSQL (its data is kept)
	@scripts/pg.sh stop

db-status: ## is the private PostgreSQL running?
	@scripts/pg.sh status || true

db-destroy: ## stop the private PostgreSQL and delete its data
	@scripts/pg.sh destroy

clean: ## remove build output (not the database)
	rm -rf bin
