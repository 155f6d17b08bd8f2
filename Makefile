# The two commands a newcomer needs: `make run` and `make test`. Everything else is for developers.
# When DATABASE_URL is unset, a private PostgreSQL cluster is started under .local/ (scripts/pg.sh).

GO        ?= go
FUZZTIME  ?= 20s
BENCHTIME ?= 1s
export GOFLAGS ?= -buildvcs=false

.PHONY: run test test-short bench fuzz lint build clean db-up db-stop db-status db-destroy help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: ## start PostgreSQL, the platform simulator and the server with two demo schools
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

lint: ## gofmt and go vet
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(GO) vet ./...

build: ## build bin/server and bin/platformsim
	@mkdir -p bin
	$(GO) build -trimpath -o bin/server ./cmd/server
	$(GO) build -trimpath -o bin/platformsim ./cmd/platformsim

db-up: ## start the private PostgreSQL and print its URL
	@scripts/pg.sh up

db-stop: ## stop the private PostgreSQL (its data is kept)
	@scripts/pg.sh stop

db-status: ## is the private PostgreSQL running?
	@scripts/pg.sh status

db-destroy: ## stop the private PostgreSQL and delete its data
	@scripts/pg.sh destroy

clean: ## remove build output (not the database)
	rm -rf bin
