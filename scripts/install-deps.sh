#!/usr/bin/env bash
# Installs the Debian packages needed to build, test and install the plugin
# (a C compiler and linker among them: rustup alone brings neither), and
# rustup's rustfmt and clippy components when they are missing.
# Idempotent: apt and rustup are only touched when something is missing.
#
#   scripts/install-deps.sh            build/test/demo dependencies
#   scripts/install-deps.sh --browser  also Chromium, chromedriver, Node.js, npm
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/env.sh
. "${here}/env.sh"

packages=(
  build-essential
  libgstreamer1.0-dev
  libgstreamer-plugins-base1.0-dev
  libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly
  gstreamer1.0-nice
  gstreamer1.0-tools
  gstreamer1.0-libav
  libssl-dev
  pkg-config
  meson
  ninja-build
  iproute2
)

for arg in "$@"; do
  case "${arg}" in
    --browser)
      packages+=(chromium chromium-driver)
      # Node.js from elsewhere (NodeSource's nodejs bundles npm and declares
      # Conflicts: npm) would make apt refuse Debian's npm: only install
      # Debian's pair when no node/npm is on PATH.
      if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        packages+=(nodejs npm)
      fi
      ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install-deps: unknown argument: ${arg}" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "${p}" 2>/dev/null || true)"
  [ "${status}" = "install ok installed" ] || missing+=("${p}")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: not root and no sudo" >&2; exit 1; }
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
else
  echo "install-deps: all ${#packages[@]} Debian packages present"
fi

# The Rust toolchain comes from rustup and cannot be installed from here
# (only the package registries are reachable); say so clearly if it's absent.
for tool in cargo rustc; do
  command -v "${tool}" >/dev/null || {
    echo "install-deps: ${tool} not found on PATH or in ${HOME}/.cargo/bin (install Rust >= 1.92 with rustup)" >&2
    exit 1
  }
done

# scripts/test.sh runs `cargo fmt` and `cargo clippy`; a minimal rustup
# profile has neither. Only rustup can add them, and only when it is there.
components=()
cargo fmt --version >/dev/null 2>&1 || components+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || components+=(clippy)
if [ "${#components[@]}" -gt 0 ]; then
  if command -v rustup >/dev/null; then
    echo "install-deps: rustup component add ${components[*]}"
    rustup component add "${components[@]}"
  else
    echo "install-deps: warning: cargo ${components[*]} missing and no rustup to add them" >&2
  fi
fi
