# shellcheck shell=bash
# Sourced by the other scripts in scripts/: puts rustup's ~/.cargo/bin on PATH
# (CI and fresh shells may have cargo only there) and sets the shared defaults.

: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
export HOME

case ":${PATH}:" in
  *":${HOME}/.cargo/bin:"*) ;;
  *) [ -d "${HOME}/.cargo/bin" ] && PATH="${HOME}/.cargo/bin:${PATH}" ;;
esac
export PATH

export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

if [ -n "${CI:-}" ]; then
  # Plain logs, and no incremental caches in a one-off clone.
  export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
