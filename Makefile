# SPDX-License-Identifier: GPL-2.0
#
# hwconvey: two Rust kernel modules and their tools.
#
#   make          build both modules (and, first, the toolchain and test kernel)
#   make demo     boot the test kernel and run the demo scenario
#   make check    native tests, then the modules' KUnit suites and scenarios in a VM
#   make bench    benchmark figures: protocol core, loopback latency in a VM
#   make series-check  every patch of the series builds on its own, in order
#
# KDIR=<tree> builds against another Linux 7.3 tree with patches/ applied;
# HWC_KCONFIG=debug uses the debug kernel (KASAN, kmemleak, lockdep).
# The kernel build itself reads Kbuild, not this file.

T := tools/testing

.PHONY: all modules setup kernel check demo bench series-check clean fmt

all: modules

setup:
	$(T)/setup.sh

kernel: setup
	$(T)/build-kernel.sh >/dev/null

modules: setup
	$(T)/modules.sh

check:
	$(T)/check.sh

demo:
	$(T)/demo.sh

bench:
	$(T)/bench.sh

series-check:
	$(T)/series-check.sh

fmt:
	rustfmt --edition 2021 host_mod/*.rs guest_mod/*.rs
	cargo fmt --all
	# cargo fmt does not follow include!, which brings in proto's module list.
	rustfmt --edition 2021 proto/src/*.rs

clean:
	$(T)/modules.sh clean
	cargo clean
