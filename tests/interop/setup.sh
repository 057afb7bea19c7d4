#!/usr/bin/env bash
# Creates the virtualenv the interop test runs pyiso8583 from (`.venv` at the workspace root),
# from PyPI, pinned in requirements.txt. Safe to run again.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
if ! "$root/.venv/bin/python" -c "import iso8583" 2>/dev/null; then
  python3 -m venv "$root/.venv"
  "$root/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/interop/requirements.txt"
fi
