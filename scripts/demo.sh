#!/usr/bin/env bash
# Builds and runs the demo (examples/demo.rs). Arguments go to the demo.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

bash scripts/install-deps.sh >&2
# shellcheck source=scripts/env.sh
. scripts/env.sh

# --lib too: the README's next step uses target/release/libgstwhipwhep.so
# (export GST_PLUGIN_PATH=$PWD/target/release).
cargo build --release --lib --example demo
exec "${CARGO_TARGET_DIR:-${root}/target}/release/examples/demo" "$@"
