#!/usr/bin/env bash
# Builds and runs the demo (examples/demo.rs). Arguments go to the demo.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

bash scripts/install-deps.sh >&2
# shellcheck source=scripts/env.sh
. scripts/env.sh

cargo build --release --example demo
exec "${CARGO_TARGET_DIR:-${root}/target}/release/examples/demo" "$@"
