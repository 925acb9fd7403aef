#!/usr/bin/env bash
# The two commands of the README:
#   ./run.sh bench [ARGS]   install ipckit and print the benchmark report for this host
#   ./run.sh test  [ARGS]   install ipckit with its test dependencies and run the whole suite
# Everything is installed here, from scratch if need be: the system's C compiler and
# tools (apt), a virtual environment in .venv, the Python dependencies, and ipckit
# itself (a real, non-editable install, so the tests see what a user gets).
set -euo pipefail
cd "$(dirname "$0")"
what="${1:-}"; shift || true
case "$what" in
  test) extra="test" ;;
  bench) extra="bench" ;;
  *) echo "usage: ./run.sh test|bench [args...]" >&2; exit 2 ;;
esac

# System packages: a C compiler and headers (the cffi bindings, the tests' and the
# benchmark's C peers), iproute2 (network-namespace tests), util-linux (taskset).
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || missing+=(python3-dev)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "run.sh: installing system packages: ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "run.sh: please install: ${missing[*]}" >&2; exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check ".[$extra]"

if [ "$what" = test ]; then
  exec .venv/bin/python -m pytest "$@"
else
  exec .venv/bin/ipckit bench "$@"
fi
