# SPDX-License-Identifier: GPL-2.0
# Shared settings of the build and test scripts. Sourced, not run.

HWC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HWC_CACHE=${HWC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hwconvey}
HWC_TOOLS=$HWC_CACHE/tools
BINDGEN=$HWC_TOOLS/bin/bindgen
VNG=$HWC_TOOLS/venv/bin/vng
LIBCLANG_PATH=/usr/lib/llvm-19/lib
RUST_LIB_SRC=/usr/lib/rustlib/src/rust/library
export LIBCLANG_PATH
# virtme-ng calls its own helpers (virtme-run, ...) through PATH.
export PATH="$HWC_TOOLS/venv/bin:$PATH"

# The toolchain goes on make's command line: the kernel Makefile's own
# assignments beat the environment.
KMAKE_VARS=(LLVM=-19 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CLIPPY_DRIVER=/usr/bin/clippy-driver
	BINDGEN="$BINDGEN" RUST_LIB_SRC="$RUST_LIB_SRC")

log() { printf '[hwconvey] %s\n' "$*" >&2; }
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
die() { printf '[hwconvey] error: %s\n' "$*" >&2; exit 1; }

# The first Debian archive URI of the configured apt sources.
debian_mirror() {
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		/etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }
		     /^deb / { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }' |
		grep -E '/debian/?$' | sed -n 1p || true
}
