#!/usr/bin/env bash
# Installs everything vlad-tui, its demo and its tests need on a fresh Debian/Ubuntu machine:
# system packages (OpenSSH server, PostgreSQL server, tmux, Node.js), pm2 into .tools/ from
# .tools/package-lock.json, and the Python virtual environment in .venv/ from requirements.lock
# (exact versions, every file's hash checked). Versions move only through
# scripts/upgrade-deps.sh. Idempotent: re-running installs only what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
  || need_apt+=(postgresql)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# pm2, exactly as locked; the copy of the lock beside node_modules says what is installed.
if ! cmp -s .tools/package-lock.json .tools/node_modules/.vlad-installed-lock 2>/dev/null; then
  echo "setup: installing pm2 into .tools/ (.tools/package-lock.json)"
  npm ci --silent --no-audit --no-fund --prefix .tools >/dev/null
  cp .tools/package-lock.json .tools/node_modules/.vlad-installed-lock
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${pip[@]}" --require-hashes --no-deps -r requirements.lock
# The package itself, editable, built by the locked setuptools (no isolated, floating build env).
"${pip[@]}" --no-deps --no-build-isolation -e .
echo "setup: ready (.venv from requirements.lock, .tools/node_modules/.bin/pm2)"
