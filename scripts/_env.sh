# Sourced by scripts/*.sh: a project virtualenv with everything the project needs, installed once.
# Works on a fresh Debian machine with only python3 (installs python3-venv when run as root).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VASTCAP_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

apt_install() {  # apt_install PKG...: install Debian packages (root or sudo), once
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || return 1
  log "apt-get install ${missing[*]}"
  if [ ! -f /tmp/.vastcap-apt-updated ]; then as_root apt-get update -qq && touch /tmp/.vastcap-apt-updated || return 1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

make_venv() {  # make_venv DIR: a virtualenv at DIR (python3-venv from Debian if needed)
  local dir="$1"
  [ -x "$dir/bin/python" ] && return 0
  log "creating virtualenv $dir"
  if ! python3 -m venv "$dir" 2>/dev/null; then
    rm -rf "$dir"
    apt_install python3-venv || die "python3 -m venv does not work here; install Debian's python3-venv"
    python3 -m venv "$dir"
  fi
  "$dir/bin/python" -m pip install -q --upgrade pip
}

ensure_project_env() {
  make_venv "$VENV"
  local stamp="$VENV/.vastcap-installed"
  local want
  want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing vastcap-guard and its extras into $VENV"
    "$PY" -m pip install -q -e ".[scrapy,playwright,redis,test,dev]"
    echo "$want" > "$stamp"
  fi
}
