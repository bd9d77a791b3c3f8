#!/usr/bin/env bash
# Install the peer NPMLE solvers used by the benchmark (idempotent).
#
#   bash benchmarks/peers/setup_peers.sh
#
#  * mixsqpx (PyPI) in <repo>/.venv-mixsqpx, built with Python 3.12 and
#    jax/jaxlib 0.9.2. mixsqpx 0.1.4 declares jax<=0.6.0, but its XLA FFI
#    kernel works with jax 0.9.2, so it is installed with --no-deps on top of
#    jax 0.9.2 and smoke-tested; if that test fails we fall back to the
#    jax version mixsqpx pins.
#  * R mixsqp from Debian's r-cran-mixsqp (needs root or passwordless sudo).
#
# Never fails the caller: whatever cannot be installed is reported and the
# script still exits 0.

set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$REPO/.venv-mixsqpx"
JAX_VERSION="0.9.2"

say() { echo "[setup_peers] $*"; }

SMOKE='
import numpy as np, jax
from mixsqpx import mixsolve
L = np.log(np.array([[1.0, 0.5], [0.2, 1.0], [0.9, 0.1]]))
p = np.asarray(mixsolve(L)[0])
assert p.shape == (2,) and np.all(np.isfinite(p)) and abs(p.sum() - 1) < 1e-6, p
'

find_python312() {
  local c
  for c in python3.12 "$(command -v pyenv >/dev/null 2>&1 && pyenv root)/versions/"3.12*/bin/python3.12 \
           "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
    if [ -n "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

setup_mixsqpx() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<EOF >/dev/null 2>&1
import jax
assert jax.__version__ == "$JAX_VERSION", jax.__version__
$SMOKE
EOF
  then
    say "mixsqpx: already installed in $VENV"
    return 0
  fi

  local py
  if ! py="$(find_python312)"; then
    say "mixsqpx: SKIPPED - no Python 3.12 interpreter found (mixsqpx needs 3.12)"
    return 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    say "mixsqpx: creating $VENV with $py"
    "$py" -m venv "$VENV" || { say "mixsqpx: SKIPPED - venv creation failed"; return 1; }
  fi
  local pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
  if "${pip[@]}" "jax==$JAX_VERSION" "jaxlib==$JAX_VERSION" numpy \
     && "${pip[@]}" --no-deps mixsqpx \
     && "$VENV/bin/python" -c "$SMOKE"; then
    say "mixsqpx: installed with jax $JAX_VERSION"
    return 0
  fi
  say "mixsqpx: did not work with jax $JAX_VERSION; trying the jax version mixsqpx pins"
  if "${pip[@]}" mixsqpx numpy && "$VENV/bin/python" -c "$SMOKE"; then
    say "mixsqpx: installed with jax $("$VENV/bin/python" -c 'import jax; print(jax.__version__)')"
    return 0
  fi
  say "mixsqpx: FAILED to install; run_mixsqpx.py will not be usable"
  return 1
}

r_mixsqp_ok() {
  command -v Rscript >/dev/null 2>&1 \
    && Rscript -e 'suppressPackageStartupMessages(library(mixsqp))' >/dev/null 2>&1
}

setup_r_mixsqp() {
  if r_mixsqp_ok; then
    say "R mixsqp: already installed ($(Rscript -e 'cat(as.character(packageVersion("mixsqp")))' 2>/dev/null))"
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
      sudo=(sudo -n)
    else
      say "R mixsqp: SKIPPED - need root to apt-get install r-cran-mixsqp"
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    say "R mixsqp: SKIPPED - apt-get not available (install R package 'mixsqp' by hand)"
    return 1
  fi
  say "R mixsqp: installing r-cran-mixsqp via apt-get"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 \
    || say "R mixsqp: apt-get update failed; trying install anyway"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends r-cran-mixsqp >/dev/null 2>&1
  if r_mixsqp_ok; then
    say "R mixsqp: installed"
    return 0
  fi
  say "R mixsqp: FAILED to install; run_mixsqp.R will not be usable"
  return 1
}

ok_py=no; ok_r=no
setup_mixsqpx && ok_py=yes
setup_r_mixsqp && ok_r=yes
say "available: mixsqpx=$ok_py R-mixsqp=$ok_r"
exit 0
