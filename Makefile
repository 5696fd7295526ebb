# vxdp — see README.md. Everything that needs root says so.
# sudo's secure_path usually lacks Go's directory.
export PATH := $(PATH):/usr/local/go/bin
GO       ?= go
BIN      := bin/vxdp
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
# SOURCE_DATE_EPOCH (reproducible builds) fixes the build date.
BUILD_DATE ?= $(shell date -u -d @$${SOURCE_DATE_EPOCH:-$$(date +%s)} +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILD_DATE)
TESTFLAGS ?= -count=1 -timeout 15m
# make install: DESTDIR and PREFIX as usual (the units expect /usr/local/bin/vxdp).
PREFIX   ?= /usr/local
DESTDIR  ?=

.PHONY: all build deps generate check-generate vet test fuzz lab lab-down bench clean man install

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/vxdp

# The man page, generated from the command line (a test checks it is current).
man: build
	$(BIN) man > docs/vxdp.1

# The binary, its man page, shell completion, systemd units and example
# configuration (configuration files that exist are kept). Then:
#   systemctl daemon-reload && systemctl enable --now vxdp-agent
UNITDIR  ?= $(PREFIX)/lib/systemd/system
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/vxdp
	install -D -m 0644 docs/vxdp.1 $(DESTDIR)$(PREFIX)/share/man/man1/vxdp.1
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions
	$(BIN) completion bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/vxdp
	$(BIN) completion zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_vxdp
	install -D -m 0644 deploy/systemd/vxdp-agent.service $(DESTDIR)$(UNITDIR)/vxdp-agent.service
	install -D -m 0644 deploy/systemd/vxdp-server.service $(DESTDIR)$(UNITDIR)/vxdp-server.service
	install -D -m 0644 docs/operations.md $(DESTDIR)$(PREFIX)/share/doc/vxdp/operations.md
	test -e $(DESTDIR)/etc/default/vxdp-agent || install -D -m 0644 deploy/systemd/vxdp-agent.default $(DESTDIR)/etc/default/vxdp-agent
	test -e $(DESTDIR)/etc/vxdp/vxdp-agent.ini || install -D -m 0640 deploy/vxdp-agent.ini $(DESTDIR)/etc/vxdp/vxdp-agent.ini

# Debian packages for building BPF objects and inspecting the kernel.
deps:
	./scripts/deps.sh

# The compiler of the committed BPF objects, pinned in one place:
# scripts/bpf-clang.env (Debian 12's clang-14), which deps.sh and
# check-generate.sh read too.
include scripts/bpf-clang.env

# Rebuild the committed bpf2go output from bpf/*.c with
# clang-$(BPF_LLVM_MAJOR) $(BPF_CLANG_VERSION) (refused with another).
generate: deps
	./scripts/check-generate.sh --write

# Fail if the committed BPF objects differ from the sources, or if the
# compiler is not the pinned one (naming the expected and found).
check-generate: deps
	./scripts/check-generate.sh

vet:
	$(GO) vet ./...
	@bad=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel\.go$$')); \
	if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi

# The README's test command: tools, generated-code check, vet, all tests.
# Run as root: the BPF, netns and lab tests need it (they skip otherwise).
test: deps check-generate vet
	$(GO) test $(TESTFLAGS) ./...

# The long fuzz run: 1,000,000 random and mutated frames through each of the
# port and uplink programs, held to the Go model (make test runs 20,000).
# VXDP_FUZZ_SEED=N replays a run.
fuzz: deps
	VXDP_FUZZ_FRAMES=$${VXDP_FUZZ_FRAMES:-1000000} $(GO) test -count=1 -v -run TestFuzzPrograms ./bpf/

# The README's main command: a one-machine lab of the seed topology.
lab: deps build
	$(BIN) lab up

lab-down: build
	$(BIN) lab down

bench: build
	$(BIN) bench bpf

clean:
	rm -rf bin
