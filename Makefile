# muxlab: `make bench` runs the default workload matrix; `make test` runs every test.
# Both install what is missing first (Debian packages, as root) and build in release mode.

SWIFT ?= $(shell command -v swift || echo /opt/swift/usr/bin/swift)
BPFTOOL ?= $(shell command -v bpftool || echo /usr/sbin/bpftool)
MUXLAB := .build/release/muxlab
WORKLOAD ?= workloads/default.toml
# Extra `muxlab bench` flags, e.g. BENCH_ARGS="--probes off".
BENCH_ARGS ?=
RUN_DIR ?= results/$(shell date -u +%Y%m%dT%H%M%SZ)
# A run directory to compare the new run against (`muxlab compare`), e.g. BASELINE=results/reference.
BASELINE ?=

# Debian packages the build, the probes and the plots need.
# nginx and wrk are the peers (workloads/peers.toml); nginx's own service is never started.
# iproute2's ip makes the network namespaces of topology = "netns" cells. OpenSSH reaches other hosts
# (server_host, load_hosts); the tests run an sshd of their own in each test host (its service never starts).
APT_PACKAGES := libbpf-dev bpftool libelf-dev zlib1g-dev libnuma-dev liburing-dev pkg-config python3-matplotlib nginx wrk iproute2 openssh-client openssh-server

.PHONY: all deps build install test bench bench-full bench-peers swiftnio-peer bench-c100k bench-openloop soak docs clean

all: build

include mk/bpf.mk

deps: .build-deps.stamp
.build-deps.stamp: Makefile
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "muxlab: installing Debian packages:$$missing"; \
	    guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; guard=1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; rc=$$?; \
	    if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; [ $$rc = 0 ] || exit 1; \
	  else \
	    echo "muxlab: missing Debian packages:$$missing"; \
	    echo "muxlab: run as root, or install them first: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
	@# eBPF tracepoints live in tracefs; mount it where the kernel expects it when nothing is there.
	@if [ "$$(id -u)" = 0 ] && [ ! -e /sys/kernel/tracing/events ]; then mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true; fi
	@touch $@

# After every build: the commit it was built from, beside the binary (`muxlab --version` prints it;
# " dirty" when tracked files differ from it).
STAMP_COMMIT = @{ git rev-parse --short HEAD 2>/dev/null || echo unknown; } | tr -d '\n' > .build/release/muxlab.commit; \
	if ! git diff --quiet HEAD 2>/dev/null; then printf ' dirty' >> .build/release/muxlab.commit; fi; echo >> .build/release/muxlab.commit

build: deps bpf
	$(SWIFT) build -c release
	$(STAMP_COMMIT)

test: deps bpf
	$(SWIFT) build -c release
	$(STAMP_COMMIT)
	$(SWIFT) test -c release --no-parallel

# Run the matrix, then plot and report from its CSV (also after failed cells: finished rows count).
# Each run gets a new directory; an existing run is never overwritten.
# With BASELINE=DIR, `muxlab compare DIR RUN_DIR` runs last; the recipe ends with the first non-zero
# status: the bench's, plot's or report's, else compare's (2 a regression, 1 an error). A regression
# fails `make bench` only through that status (make itself then exits 2 for any failed recipe).
bench: build
	@if [ -e "$(RUN_DIR)/results.csv" ]; then echo "muxlab: $(RUN_DIR) already holds a run; set RUN_DIR to a new directory" >&2; exit 1; fi
	@mkdir -p $(RUN_DIR)
	@status=0; $(MUXLAB) bench $(WORKLOAD) --out $(RUN_DIR) $(BENCH_ARGS) || status=$$?; \
	compared=""; \
	if [ -s "$(RUN_DIR)/results.csv" ]; then \
	  $(MUXLAB) plot $(RUN_DIR) || status=$$((status ? status : 1)); \
	  $(MUXLAB) report $(RUN_DIR) || status=$$((status ? status : 1)); \
	  if [ -n "$(BASELINE)" ]; then \
	    $(MUXLAB) compare "$(BASELINE)" $(RUN_DIR) || status=$$((status ? status : $$?)); compared=" compare.md compare.csv"; \
	  fi; \
	fi; \
	echo "muxlab: results in $(RUN_DIR)/: results.csv syscalls.csv timeline.csv manifest.json findings.md findings.csv plots/ histograms/$$compared"; \
	exit $$status

# Every workload family and claim (about 15 minutes on 2 cores): the same steps as bench.
bench-full:
	@$(MAKE) --no-print-directory bench WORKLOAD=workloads/full.toml RUN_DIR=$(RUN_DIR)

# muxlab's server and load generator against nginx, SwiftNIO's HTTP/1.1 server and wrk, same pins, probes on.
bench-peers: swiftnio-peer
	@$(MAKE) --no-print-directory bench WORKLOAD=workloads/peers.toml RUN_DIR=$(RUN_DIR)

# The SwiftNIO peer (peers/swiftnio, a package of its own): built here only, never by `make test`.
swiftnio-peer:
	$(SWIFT) build -c release --package-path peers/swiftnio --scratch-path .build-swiftnio

# muxlab under PREFIX (default /usr/local), so another host has it at a known path: the binary, its
# preloaded allocation counter, the plot script and muxlab.commit in PREFIX/lib/muxlab/, the Swift
# runtime libraries it links (from the toolchain, as ldd resolves them) in PREFIX/lib/muxlab/swift/, and
# PREFIX/bin/muxlab, a script that runs it with those libraries first (a host needs no Swift toolchain;
# it needs the Debian packages of `make deps`: libbpf, libelf, libnuma, liburing, python3-matplotlib).
PREFIX ?= /usr/local
install: build
	@sh mk/install.sh "$(PREFIX)" "$(SWIFT)"

# docs/claims.md from the claim rules and the workloads (a test fails when it is stale).
docs: build
	$(MUXLAB) report --claims-doc > docs/claims.md

# What the open loop costs the load (issue 13): open loop at 50,000 requests/s beside closed loops
# that bracket its throughput, 5 interleaved repeats, timing windows only (~3 minutes); report: openloop.md.
bench-openloop:
	@$(MAKE) --no-print-directory bench WORKLOAD=workloads/openloop.toml RUN_DIR=$(RUN_DIR) BENCH_ARGS="--probes off"

# C10K and C100K (issue 7): 100,000 connections, 1 % active, over 8 server and 6 load processes;
# the report prints connections held, errors, memory and CPU per connection and request (~3 minutes).
bench-c100k:
	@$(MAKE) --no-print-directory bench WORKLOAD=workloads/c100k.toml RUN_DIR=$(RUN_DIR)

# The soak (issue 6): 10,000 connections for 10 minutes; the report adds stability.md
# (server descriptors and RSS over the window, flat within 5 %). Not part of `make test`.
soak: build
	@mkdir -p $(RUN_DIR)
	@status=0; $(MUXLAB) bench workloads/soak.toml --out $(RUN_DIR) || status=$$?; \
	if [ -s "$(RUN_DIR)/results.csv" ]; then $(MUXLAB) report $(RUN_DIR) >/dev/null && cat $(RUN_DIR)/stability.md || status=1; fi; \
	echo "muxlab: soak results in $(RUN_DIR)/"; exit $$status

clean: bpf-clean
	rm -rf .build .build-swiftnio .build-deps.stamp
