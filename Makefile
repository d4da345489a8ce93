# tcpnorm: build, unit and end-to-end tests, the namespace lab.
# `make lab` and `make test` install the system packages they need (Debian/Ubuntu).

GO       ?= go
BIN      ?= tcpnorm
PKGS     := iptables iproute2 tcpdump conntrack
TOOLS    := iptables ip6tables iptables-restore ip6tables-restore iptables-save ip6tables-save ip tcpdump conntrack
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
LAB_ARGS ?=

.PHONY: all build lab test vet fmt-check unit bench deps clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/tcpnorm

# Install the system tools the lab and the end-to-end tests use, only when
# one of them is missing.
deps:
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "missing:$$missing; installing $(PKGS)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(PKGS); \
	fi

# Build the namespace lab, show the fault breaking a transfer and tcpnorm
# fixing it. Pass options with LAB_ARGS, e.g. make lab LAB_ARGS="--fault pmtu --ipv6".
lab: deps build
	./$(BIN) lab $(LAB_ARGS)

fmt-check:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Unit and end-to-end tests; the end-to-end tests need root. Packages run one
# at a time so timing-sensitive lab tests do not compete for the CPUs.
test: deps fmt-check
	$(GO) mod download
	$(GO) vet ./...
	$(GO) test -p 1 -timeout 20m ./...

bench:
	$(GO) test -run XXX -bench . -benchmem ./normalize/ ./config/

clean:
	rm -f $(BIN)
