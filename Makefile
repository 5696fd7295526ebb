# vxdp — see README.md. Everything that needs root says so.
# sudo's secure_path usually lacks Go's directory.
export PATH := $(PATH):/usr/local/go/bin
GO       ?= go
BIN      := bin/vxdp
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
TESTFLAGS ?= -count=1 -timeout 15m

.PHONY: all build deps generate check-generate vet test fuzz lab lab-down bench clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/vxdp

# Debian packages for building BPF objects and inspecting the kernel.
deps:
	./scripts/deps.sh

# Rebuild the committed bpf2go output from bpf/*.c (needs clang).
generate: deps
	cd bpf && $(GO) generate ./...

# Fail if the committed BPF objects differ from the sources.
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
