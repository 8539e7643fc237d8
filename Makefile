# kioskd — see README.md.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BUILDTIME := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.buildTime=$(BUILDTIME)
CMDS     := kioskd kioskctl devportal
PLATFORMS := linux/amd64 linux/arm64 linux/arm/7 linux/arm/6

.PHONY: all run test test-hw fuzz-ci bench bench-large bench-quick build bin fuzz deb test-deb install clean

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

## test-hw: the GPIO, matrix keypad and evdev tests against a real kernel (gpio-sim, uinput) in a qemu VM; PKGS="./hw/gpio:^TestX" to choose
test-hw:
	./scripts/test-hw.sh $(PKGS)

## fuzz-ci: every fuzz target for a bounded time (FUZZ_CI_BUDGET seconds in all, default 100)
fuzz-ci:
	./scripts/fuzz-ci.sh

## bench: kioskbench's table: Go benchmarks at 100 000, start-to-ready at 1 000 000, idle at 100 000 (figures go to docs/benchmarks.md)
bench: bin
	$(GO) run ./cmd/kioskbench -kioskd bin/kioskd

## bench-large: the 1 000 000-credential benchmarks as well
bench-large: bin
	$(GO) run ./cmd/kioskbench -large -kioskd bin/kioskd

## bench-quick: small sizes (a few minutes)
bench-quick: bin
	$(GO) run ./cmd/kioskbench -quick -kioskd bin/kioskd

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
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -ldflags '$(LDFLAGS)'"$${arm:+ -X kioskd/hw/board.goarm=v$$arm}" -o $$out/ $(addprefix ./cmd/,$(CMDS)) || exit 1; \
	done

## deb: Debian packages (amd64, arm64, armhf, armel) into dist/deb/
deb:
	./scripts/build-deb.sh $(VERSION)

## test-deb: build the packages and check them (lintian, contents, unit, install into a scratch root)
test-deb:
	./scripts/test-deb.sh

## install: install kioskd as the .deb does, on this machine or under DESTDIR; starts nothing
install: bin
	install -D -m 0755 bin/kioskd $(DESTDIR)/usr/sbin/kioskd
	install -D -m 0755 bin/kioskctl $(DESTDIR)/usr/bin/kioskctl
	install -D -m 0644 systemd/kioskd.service $(DESTDIR)/lib/systemd/system/kioskd.service
	install -D -m 0644 systemd/kioskd.sysusers $(DESTDIR)/usr/lib/sysusers.d/kioskd.conf
	install -D -m 0644 systemd/kioskd.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/kioskd.conf
	install -D -m 0644 systemd/60-kioskd.rules $(DESTDIR)/lib/udev/rules.d/60-kioskd.rules
	install -D -m 0644 packaging/man/kioskd.8 $(DESTDIR)/usr/share/man/man8/kioskd.8
	install -D -m 0644 packaging/man/kioskctl.1 $(DESTDIR)/usr/share/man/man1/kioskctl.1
	@# the config is the technician's once it exists: never overwrite it
	test -e $(DESTDIR)/etc/kioskd/kioskd.toml || install -D -m 0644 packaging/kioskd.toml $(DESTDIR)/etc/kioskd/kioskd.toml
	@if [ -z "$(DESTDIR)" ]; then \
	  systemd-sysusers kioskd.conf && systemd-tmpfiles --create kioskd.conf && \
	  { [ ! -d /run/udev ] || udevadm trigger --subsystem-match=gpio --action=change; } && \
	  { [ ! -d /run/systemd/system ] || systemctl daemon-reload; } && \
	  echo "kioskd installed: edit /etc/kioskd/kioskd.toml, put the secrets in /etc/kioskd/token and /etc/kioskd/site.key (mode 0600), then: systemctl enable --now kioskd"; \
	fi

clean:
	rm -rf bin dist .run
