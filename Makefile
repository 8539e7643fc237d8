# kioskd — see README.md.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BUILDTIME := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.buildTime=$(BUILDTIME)
CMDS     := kioskd kioskctl devportal
PLATFORMS := linux/amd64 linux/arm64 linux/arm/7 linux/arm/6

.PHONY: all run test test-race bench bench-large build bin fuzz clean

all: bin

## bin: build the commands for this machine into bin/
bin:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ $(addprefix ./cmd/,$(CMDS))

## run: the daemon on simulated hardware with a demo credential set; type a PIN
run: bin
	./scripts/run-demo.sh

## test: vet, every test under the race detector (fuzz seeds included)
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

## bench: the benchmarks (figures go to docs/benchmarks.md)
bench:
	$(GO) test -run='^$$' -bench=. -benchtime=1x -count=1 ./store/ ./kiosk/ ./cmd/kioskd/

## bench-large: the 1 000 000-credential benchmarks as well
bench-large:
	KIOSKD_BENCH_LARGE=1 $(GO) test -run='^$$' -bench=. -benchtime=1x -count=1 -timeout=30m ./store/ ./cmd/kioskd/

## fuzz: each fuzz target for FUZZTIME (default 20s)
FUZZTIME ?= 20s
fuzz:
	./scripts/fuzz-all.sh $(FUZZTIME)

## build: static binaries for every supported board into dist/
build:
	@for p in $(PLATFORMS); do \
	  os=$$(echo $$p | cut -d/ -f1); arch=$$(echo $$p | cut -d/ -f2); arm=$$(echo $$p | cut -d/ -f3); \
	  out=dist/$$os-$$arch$${arm:+v$$arm}; mkdir -p $$out; \
	  echo "build $$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out/ $(addprefix ./cmd/,$(CMDS)) || exit 1; \
	done

clean:
	rm -rf bin dist .run
