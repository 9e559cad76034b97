#!/usr/bin/env bash
# Runs every check: rustfmt, clippy, cargo test, a browser test (Chromium
# against the relay, in a private network namespace), and a meson build +
# install whose installed plugin must load in gst-inspect-1.0. Exits non-zero
# on the first failure. Used as-is by CI (.ci/run).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

bash scripts/install-deps.sh
# shellcheck source=scripts/env.sh
. scripts/env.sh

mkdir -p target
# A registry of our own, so a stale ~/.cache/gstreamer-1.0 can't interfere.
# (the _1_0 variants would take precedence over the plain ones.)
unset GST_REGISTRY_1_0 GST_PLUGIN_PATH_1_0
export GST_REGISTRY="${root}/target/gst-registry.bin"

step_name=""
step_start=0
step() {
  step_end
  step_name="$*"
  step_start=${SECONDS}
  printf '\n==== %s ====\n' "${step_name}"
}
step_end() {
  if [ -n "${step_name}" ]; then
    printf '==== done: %s (%ss) ====\n' "${step_name}" "$((SECONDS - step_start))"
  fi
  step_name=""
}
on_exit() {
  local rc=$?
  if [ "${rc}" -ne 0 ]; then
    printf '\n==== FAILED (exit %s): %s ====\n' "${rc}" "${step_name:-setup}" >&2
  fi
}
trap on_exit EXIT

step "toolchain"
cargo --version
rustc --version
gst-inspect-1.0 --version

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo build --examples"
# Tests run the example programs themselves (relay, play...): `cargo test
# --all-targets` builds examples only as test harnesses.
cargo build --examples

step "cargo test --all-targets"
# Bounded, so that a hang fails the run at once instead of eating CI's time.
timeout 1200 cargo test --all-targets

# The README's first command (scripts/demo.sh: a release build, as users run
# it; timing differs from the debug build the tests use), bounded. The demo
# exits 1 unless the player received both video and audio; its summary must
# show frames of both kinds and a time to first frame.
step "demo: the README's first command (release build, relay + whipsink + whepsrc, 5 s)"
demo_out="$(bash scripts/demo.sh --seconds 5 --address 127.0.0.1:0)"
printf '%s\n' "${demo_out}"
grep -Eq '^frames received: [1-9][0-9]* \(video [1-9][0-9]*, audio [1-9][0-9]*\)' <<<"${demo_out}"
grep -Eq '^time to first frame: [0-9]+ ms' <<<"${demo_out}"

step "browser test (Chromium ↔ relay, in a private network namespace)"
# The pages the server elements serve and the elements themselves against
# Chromium: whipsink → relay → WHEP player page, and WHIP publisher page (fake
# camera) → relay → whepsrc. Screenshots and logs go to target/browser/.
bash scripts/install-deps.sh --browser
(cd tests/browser && npm ci --no-audit --no-fund)
cargo build --lib --example relay
# Only loopback exists in there: neither Chromium nor our elements can send
# anywhere else. Everything is built before entering it.
unshare -rn sh -c 'ip link set lo up && cd tests/browser && exec node --test --test-reporter=spec browser.test.mjs'

meson_build="${root}/target/meson-build"
meson_destdir="${root}/target/meson-destdir"

step "meson setup"
rm -rf "${meson_destdir}"
# The demo's release build is reused (same cargo target directory).
meson_options=(-Dcargo-target-dir="${CARGO_TARGET_DIR:-${root}/target}")
if [ -f "${meson_build}/build.ninja" ]; then
  meson setup --reconfigure "${meson_options[@]}" "${meson_build}"
else
  rm -rf "${meson_build}"
  meson setup "${meson_options[@]}" "${meson_build}"
fi

step "meson compile"
meson compile -C "${meson_build}"

step "meson install --destdir"
meson install -C "${meson_build}" --destdir "${meson_destdir}"

step "installed plugin lands in GStreamer's plugin directory"
# meson installs into pkg-config's pluginsdir (not <prefix>/<libdir>, which
# Debian's GStreamer does not scan).
pluginsdir="$(pkg-config --variable=pluginsdir gstreamer-1.0)"
installed="$(meson introspect --installed "${meson_build}" | python3 -c '
import json, sys
print("\n".join(p for p in json.load(sys.stdin).values() if p.endswith("/libgstwhipwhep.so")))')"
if [ "${installed}" != "${pluginsdir}/libgstwhipwhep.so" ]; then
  echo "FAIL: meson installs the plugin as '${installed}', not into ${pluginsdir}" >&2
  exit 1
fi
staged="${meson_destdir}${pluginsdir}"
ls -l "${staged}/libgstwhipwhep.so"

step "installed plugin is found by GStreamer without GST_PLUGIN_PATH"
# In a private mount namespace (nothing is mounted or installed on the host),
# the staged copy is laid over the real ${pluginsdir} with a read-only
# overlay, as if `meson install` had put it there. gst-inspect-1.0 then runs
# with a fresh registry and no plugin path of ours: only GStreamer's own scan
# of its system directory can find the plugin.
registry_dir="$(mktemp -d)"
for element in whipsink whipserversrc whepsrc whepserversink; do
  out="${meson_build}/inspect-${element}.txt"
  if ! env -u GST_PLUGIN_PATH -u GST_PLUGIN_PATH_1_0 -u GST_PLUGIN_SYSTEM_PATH \
      -u GST_PLUGIN_SYSTEM_PATH_1_0 -u GST_REGISTRY_1_0 \
      GST_REGISTRY="${registry_dir}/${element}.bin" GST_INSPECT_NO_COLORS=1 \
      unshare -rm sh -c 'mount -t overlay overlay -o "lowerdir=$1:$2" "$2" && exec gst-inspect-1.0 "$3"' \
        sh "${staged}" "${pluginsdir}" "${element}" >"${out}" 2>&1; then
    cat "${out}" >&2
    rm -rf "${registry_dir}"
    echo "FAIL: ${element} is not found in ${pluginsdir} without GST_PLUGIN_PATH" >&2
    exit 1
  fi
  # GStreamer may name its directory through a symlink (/lib -> usr/lib).
  filename="$(sed -n 's/^ *Filename  *//p' "${out}")"
  plugin="$(sed -n '/^Plugin Details:/,/^$/s/^ *Name  *//p' "${out}")"
  if [ "${plugin}" != whipwhep ] || [ "$(basename "${filename}")" != libgstwhipwhep.so ] \
      || [ "$(realpath -m "$(dirname "${filename}")")" != "$(realpath -m "${pluginsdir}")" ]; then
    cat "${out}" >&2
    rm -rf "${registry_dir}"
    echo "FAIL: ${element} came from plugin '${plugin}' in '${filename}', not ${pluginsdir}/libgstwhipwhep.so" >&2
    exit 1
  fi
  echo "ok: ${element} found as ${filename} (plugin ${plugin}; system scan, no GST_PLUGIN_PATH)"
done
rm -rf "${registry_dir}"
[ ! -e "${pluginsdir}/libgstwhipwhep.so" ] || echo "note: ${pluginsdir}/libgstwhipwhep.so exists on this host (installed before, not by this run)"

step_end
printf '\nAll checks passed in %ss.\n' "${SECONDS}"
