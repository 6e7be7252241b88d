# shellcheck shell=bash
# Shared by scripts/test and scripts/demo: make sure Rust, PostgreSQL and Redis (and, for the
# tests, Chromium) are installed, installing the Debian/Ubuntu packages when this user may,
# and locate the PostgreSQL binaries.

lf_say() {
  printf '%s\n' "$*" >&2
}

# Exits with instructions unless cargo is available.
lf_require_cargo() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    # Installed with rustup, but the shell profile that puts it on PATH was not read.
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    export PATH
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    lf_say "cargo not found: install Rust with rustup (https://rustup.rs):"
    lf_say "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y"
    lf_say '  . "$HOME/.cargo/env"'
    lf_say "then run this command again."
    exit 1
  fi
}

# Prints the first folder holding both initdb and postgres: from PATH, then
# `pg_config --bindir`, then the highest-versioned /usr/lib/postgresql/*/bin.
lf_pg_bindir() {
  local candidate dir
  local -a candidates=()
  if candidate=$(command -v initdb 2>/dev/null); then
    candidates+=("$(dirname "$candidate")")
  fi
  if command -v pg_config >/dev/null 2>&1 && dir=$(pg_config --bindir 2>/dev/null); then
    candidates+=("$dir")
  fi
  while IFS= read -r dir; do
    candidates+=("$dir")
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)
  for dir in "${candidates[@]}"; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

# Installs the Debian/Ubuntu packages named, as root or with passwordless sudo; otherwise
# exits saying what to install.
lf_install() {
  local -a as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      as_root=(sudo -n)
    else
      lf_say "missing packages: $*"
      lf_say "install them (Debian/Ubuntu) with:"
      lf_say "  sudo apt-get update && sudo apt-get install -y $*"
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    lf_say "missing: $*; no apt-get here: install them with this system's package manager."
    exit 1
  fi
  lf_say "installing missing packages: $*"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" </dev/null
}

# Installs the postgresql and redis-server packages when their servers are missing.
lf_require_services() {
  local -a missing=()
  lf_pg_bindir >/dev/null || missing+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  lf_install "${missing[@]}"
  if ! lf_pg_bindir >/dev/null || ! command -v redis-server >/dev/null 2>&1; then
    lf_say "the packages were installed, but initdb/postgres or redis-server still cannot be found"
    exit 1
  fi
}

# Installs Chromium and its WebDriver when missing: the page tests drive a real browser.
lf_require_browser() {
  local -a missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  lf_install "${missing[@]}"
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    lf_say "the packages were installed, but chromium or chromedriver still cannot be found"
    exit 1
  fi
}
