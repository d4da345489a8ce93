# tcpnorm: build, unit and end-to-end tests, the namespace lab.
# `make lab` and `make test` install the system packages they need (Debian/Ubuntu).

GO       ?= go
BIN      ?= tcpnorm
# What the daemon and the lab need (make lab, make bench).
PKGS     := iptables iproute2 tcpdump conntrack ipset
TOOLS    := iptables ip6tables iptables-restore ip6tables-restore iptables-save ip6tables-save ip tcpdump conntrack ipset
# What only the tests need on top: setpriv (the unprivileged daemon test),
# tshark (reads evidence files back), systemd-analyze (verifies the example
# unit), man (renders the manual pages of the package test).
TEST_PKGS  := util-linux tshark systemd man-db
TEST_TOOLS := setpriv tshark systemd-analyze man
# Debian packages whose test and example captures diagnose's regression
# corpus reads where they are installed (diagnose/testdata/corpus/MANIFEST.md).
CORPUS_PKGS := pathspider python3-dpkt pcapfix pktanon ruby-pcaprub python3-libtrace
# The version comes from the build information the Go toolchain stamps
# from git (tcpnorm version, go version -m); -buildvcs=auto overrides a
# GOFLAGS=-buildvcs=false in the environment.
BUILDFLAGS := -buildvcs=auto
# A pure Go binary: the daemon drops its capabilities in every thread with
# syscall.AllThreadsSyscall, which a binary linked with cgo cannot use.
export CGO_ENABLED := 0
LAB_ARGS ?=

.PHONY: all build lab test soak soak-deps vet fmt-check tidy-check selfcontained-check cross record man deb unit bench deps test-deps clean

all: build

build:
	$(GO) build $(BUILDFLAGS) -o $(BIN) ./cmd/tcpnorm

# Install the system tools the daemon and the lab use, only when one of
# them is missing.
deps:
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "missing:$$missing; installing $(PKGS)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 $(PKGS); \
	fi

# What the tests need on top of deps, each only when missing: TEST_PKGS,
# the corpus packages, Postfix and promtool (checks the example alert
# rules).
test-deps: deps
	@missing=""; for t in $(TEST_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "missing:$$missing; installing $(TEST_PKGS)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 $(TEST_PKGS); \
	fi
	@missing=""; for p in $(CORPUS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "missing corpus packages:$$missing; installing them"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 $$missing; \
	fi
	@# Postfix for the probe's MTA test, installed as "No configuration":
	@# no main.cf, so no host MTA is configured or started (the tests run
	@# their own instances with their state in temporary directories).
	@dpkg -s postfix >/dev/null 2>&1 || { \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 postfix; }; }
	@# promtool from Debian's prometheus package, without installing and
	@# starting a Prometheus server.
	@command -v promtool >/dev/null 2>&1 || { \
		d=$$(mktemp -d /tmp/promtool.XXXXXX) && trap 'rm -rf "$$d"' EXIT && cd "$$d" && \
		{ apt-get download prometheus 2>/dev/null || { apt-get update && apt-get download prometheus; }; } && \
		dpkg-deb -x prometheus_*.deb root && install -m 0755 root/usr/bin/promtool /usr/local/bin/promtool && \
		echo "installed /usr/local/bin/promtool"; }

# Build the namespace lab, show the fault breaking a transfer and tcpnorm
# fixing it. Pass options with LAB_ARGS, e.g. make lab LAB_ARGS="--fault pmtu --ipv6".
lab: deps build
	./$(BIN) lab $(LAB_ARGS)

fmt-check:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# go.mod and go.sum must be what `go mod tidy` makes of them.
tidy-check:
	@$(GO) mod tidy -diff >/dev/null 2>&1 || { echo "go.mod/go.sum not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }

# The repository is self-contained: no test, script or rule reads a path
# beside it (data a test needs is in a testdata folder, with a MANIFEST).
selfcontained-check:
	@if git grep --untracked -I -nE '\.\./shared|\.\./\.\./\.\./|/work/' -- . ':!Makefile'; then \
		echo "the lines above read a path outside the repository: copy the data into testdata"; exit 1; fi

# tcpnorm builds for macOS and Windows too, pure Go without cgo: check,
# status, report, diagnose, suspects and version work there; run, rules,
# lab and probe say "Linux only" (the Linux-only packages and files carry
# //go:build linux). go vet type-checks every package and test file that
# builds there, so a Linux-only file without its tag fails here.
CROSS := darwin/arm64 windows/amd64
cross:
	@set -e; for p in $(CROSS); do \
		echo "cross $$p: go build ./cmd/tcpnorm, go vet ./..."; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -o /dev/null ./cmd/tcpnorm; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet ./...; \
	done

# Regenerate the recorded captures (root, a few minutes): diagnose's lab
# fault captures and its regression corpus of real software (build tag
# record; needs curl, iperf3, redis, swaks, python3-aiosmtpd).
record: deps build
	$(GO) test -tags record -count=1 -p 1 -timeout 20m -run 'TestLab$$|TestCorpusRecord' -v ./diagnose/

# Unit and end-to-end tests; the end-to-end tests need root. Packages run one
# at a time so timing-sensitive lab tests do not compete for the CPUs.
test: test-deps fmt-check selfcontained-check cross
	$(GO) mod download
	@$(MAKE) --no-print-directory tidy-check
	$(GO) vet ./...
	$(GO) test -p 1 -timeout 20m ./...
	@$(GO) test -count=1 -run 'TestCorpus$$' -v ./diagnose/ | grep 'corpus:' | sed 's/^ *corpus_test.go:[0-9]*: /diagnose /'

# What the soak tests' Exim and Sendmail need installed: both run from
# their Debian packages unpacked into a temporary directory (Debian's MTAs
# conflict with each other, and Postfix is installed), which the tests
# fetch with apt-get download into $(DEB_BUILD)/debs; these are the
# libraries they link (Debian 12's names) and the m4 that makes
# sendmail.cf.
MTA_PKGS := m4 libidn12 libidn2-0 libgnutls30 libgnutls-dane0 libpcre2-8-0 libcrypt1 libnsl2 libdb5.3 \
	libwrap0 liblockfile1 libldap-2.5-0 libsasl2-2 libssl3

soak-deps: test-deps
	@missing=""; for p in $(MTA_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "missing:$$missing; installing them"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 $$missing; \
	fi

# Long-running checks, not part of `make test` (root, about 25 minutes
# with the defaults): the soak tests (build tag soak: a SYN flood, a leak
# check running for LEAKTIME after a minute's warm-up, and Exim and
# Sendmail sending through the window-limit firewall from the mail log to
# the fix, about 50 s for each MTA and tcpnorm mode), then every fuzz
# target in the repository for FUZZTIME each (their seed corpora already
# run in `make test`, as plain tests; new crashers are written under the
# package's testdata/fuzz/ and fail the run).
FUZZTIME ?= 30s
LEAKTIME ?= 10m
soak: soak-deps
	$(GO) test -tags soak -p 1 -timeout 60m -count=1 -v -run '^TestSoak|^TestMTA(Exim|Sendmail)Outbound$$' ./e2e/ -args -leak $(LEAKTIME)
	@set -e; for d in $$(grep -l '^func Fuzz' $$(find . -name '*_test.go' -not -path './.git/*') | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$d/*_test.go | sed 's/^func //'); do \
			echo "fuzz $$d $$f for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$d; \
		done; \
	done

# Daemon benchmarks (root, about 25 minutes; QUICK=1: one short round, about
# 2 minutes): kernel, TCPOPTSTRIP, naive Go and C NFQUEUE consumers and
# tcpnorm on a namespace topology; writes the "## Daemon benchmarks" section
# of BENCHMARKS.md (BENCH_MD) and the raw results (BENCH_OUT). Then the
# normalize and config microbenchmarks.
BENCH_MD   ?= BENCHMARKS.md
BENCH_OUT  ?= /tmp/tcpnorm-bench-results.json
BENCH_ARGS ?=
bench: deps
	@for t in iperf3 gcc; do command -v $$t >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 iperf3 gcc; break; }; done
	@test -f /usr/include/libnetfilter_queue/libnetfilter_queue.h || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 libnetfilter-queue-dev; }
	@set -e; d=$$(mktemp -d /tmp/tnbench-bin.XXXXXX); trap 'rm -rf "$$d"' EXIT INT TERM; \
	$(GO) build $(BUILDFLAGS) -o "$$d/tcpnorm" ./cmd/tcpnorm; \
	$(GO) build -o "$$d/tnbench" ./bench/cmd/tnbench; \
	$(GO) build -o "$$d/naiveq" ./bench/cmd/naiveq; \
	$(GO) build -o "$$d/connload" ./bench/cmd/connload; \
	gcc -O2 -Wall -o "$$d/cq" bench/cq/cq.c -lnetfilter_queue -lnfnetlink -lpthread; \
	args="-bin $$d -out $(BENCH_OUT) -md $(BENCH_MD) -allocbench $(if $(QUICK),-quick) $(BENCH_ARGS)"; \
	BENCH_CMD="make bench$(if $(QUICK), QUICK=$(QUICK))$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" "$$d/tnbench" run $$args
	$(GO) test -run XXX -bench . -benchmem -count 5 ./normalize/ ./config/ ./diagnose/ ./suspects/

# Manual pages, rendered from man/*.md (the one source README's references
# are checked against) with go-md2man by internal/mangen.
DEB_BUILD := build
man:
	$(GO) run ./internal/mangen -out $(DEB_BUILD)/man man/*.md

# The Debian package tcpnorm_VERSION_ARCH.deb in $(DEB_BUILD)/, built by
# nfpm (pinned in go.mod as a tool) from packaging/nfpm.yaml. VERSION is
# the module version of the binary's build information, in Debian's
# ordering: v0.0.0-20261207181110-caa1144cac31 becomes
# 0.0.0~20261207181110.caa1144cac31, v1.2.0 becomes 1.2.0.
deb: man
	$(GO) build $(BUILDFLAGS) -trimpath -o $(DEB_BUILD)/tcpnorm ./cmd/tcpnorm
	@set -e; \
	mod=$$($(GO) version -m $(DEB_BUILD)/tcpnorm | awk '$$1 == "mod" { print $$3 }'); \
	case "$$mod" in v[0-9]*) ;; *) mod=v0.0.0-dev ;; esac; \
	version=$$(echo "$$mod" | sed -e 's/^v//' -e 's/-/~/' -e 's/-/./g'); \
	rm -f $(DEB_BUILD)/tcpnorm_*.deb; \
	VERSION=$$version ARCH=$$($(GO) env GOARCH) $(GO) tool nfpm package -f packaging/nfpm.yaml -p deb -t $(DEB_BUILD)/; \
	ls $(DEB_BUILD)/tcpnorm_*.deb

clean:
	rm -f $(BIN)
	rm -rf $(DEB_BUILD)
