# eBPF part of the sampler (included by the top-level Makefile; also works on
# its own: make -f mk/bpf.mk bpf). Produces the libbpf skeleton that
# Sources/CSampler/sampler.c includes. vmlinux.h and the object stay in
# .build-bpf/, the skeleton goes to Sources/CSampler/generated/ (git-ignored).
#
# vmlinux.h is generated once, when missing; `make bpf-clean` regenerates it
# (e.g. after a kernel upgrade). The skeleton is rebuilt only when the .bpf.c
# or csampler.h changes.

CLANG ?= /opt/swift/usr/bin/clang
BPFTOOL ?= bpftool
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
BPF_ARCH ?= x86
BPF_BUILD_DIR ?= .build-bpf
BPF_CFLAGS ?= -g -O2 -Wall

BPF_SRC_DIR := Sources/CSampler
BPF_SRC := $(BPF_SRC_DIR)/muxsampler.bpf.c
BPF_HDR := $(BPF_SRC_DIR)/include/csampler.h
BPF_VMLINUX := $(BPF_BUILD_DIR)/vmlinux.h
BPF_OBJ := $(BPF_BUILD_DIR)/muxsampler.bpf.o
BPF_SKEL := $(BPF_SRC_DIR)/generated/muxsampler.skel.h

.PHONY: bpf bpf-clean

bpf: $(BPF_SKEL)

$(BPF_BUILD_DIR):
	mkdir -p $@

$(BPF_VMLINUX): | $(BPF_BUILD_DIR)
	$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c > $@.tmp
	mv $@.tmp $@

# clang keeps DWARF next to BTF; `bpftool gen object` links it into an object
# with BTF only, which keeps the embedded skeleton small.
$(BPF_OBJ): $(BPF_SRC) $(BPF_HDR) $(BPF_VMLINUX) | $(BPF_BUILD_DIR)
	$(CLANG) $(BPF_CFLAGS) -target bpf -D__TARGET_ARCH_$(BPF_ARCH) \
		-I$(BPF_BUILD_DIR) -I$(BPF_SRC_DIR)/include -c $(BPF_SRC) -o $(BPF_BUILD_DIR)/muxsampler.tmp.bpf.o
	$(BPFTOOL) gen object $@ $(BPF_BUILD_DIR)/muxsampler.tmp.bpf.o

$(BPF_SKEL): $(BPF_OBJ)
	mkdir -p $(dir $@)
	$(BPFTOOL) gen skeleton $(BPF_OBJ) > $(BPF_BUILD_DIR)/muxsampler.skel.h.tmp
	mv $(BPF_BUILD_DIR)/muxsampler.skel.h.tmp $@

bpf-clean:
	rm -rf $(BPF_BUILD_DIR) $(BPF_SRC_DIR)/generated
