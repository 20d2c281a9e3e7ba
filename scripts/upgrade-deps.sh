#!/usr/bin/env bash
# The one way versions move. Re-resolves requirements.lock (Python, from pyproject.toml's ranges)
# and .tools/package-lock.json (pm2, newest 6.x), rebuilds .venv and .tools from them as a fresh
# machine would, and runs the whole test suite. Commit the changed lock files only if it passed.
#
#   bash scripts/upgrade-deps.sh              # every package to the newest its range allows
#   bash scripts/upgrade-deps.sh asyncssh     # only these Python packages (pm2 stays)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh >/dev/null   # uv, as the current lock pins it
if [ $# -gt 0 ]; then
  upgrade=(); for package in "$@"; do upgrade+=(--upgrade-package "$package"); done
else
  upgrade=(--upgrade)
  npm install --silent --no-audit --no-fund --save-exact --prefix .tools pm2@6 >/dev/null
  version=$(node -p 'require("./.tools/package-lock.json").packages["node_modules/pm2"].version')
  sed -i -E "s/^PM2_VERSION = \".*\"/PM2_VERSION = \"$version\"/" vlad_tui/demo/pm2.py
fi
.venv/bin/uv pip compile pyproject.toml --extra test --extra dev --universal --python-version 3.11 \
  --generate-hashes --custom-compile-command "bash scripts/upgrade-deps.sh" "${upgrade[@]}" \
  --quiet --output-file requirements.lock

rm -rf .venv .tools/node_modules
bash scripts/setup.sh
.venv/bin/python -m pytest -q
git --no-pager diff --stat -- requirements.lock .tools/package-lock.json vlad_tui/demo/pm2.py
