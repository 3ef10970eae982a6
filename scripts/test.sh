#!/usr/bin/env bash
# The whole test suite: lint, types, and every pytest run (core, Scrapy in each reactor mode,
# Scrapy's and Playwright's oldest supported versions, an install with only a Playwright fork,
# camoufox, real headless Chromium through Playwright and Selenium). Installs what it needs.
# Usage: scripts/test.sh [extra pytest args for the main run]
source "$(dirname "$0")/_env.sh"

SCRAPY_MIN="${VASTCAP_SCRAPY_MIN:-2.13.4}"   # the oldest Scrapy we support (pyproject: scrapy>=2.13)
# the oldest Playwright we support (pyproject: playwright>=1.40; on Python 3.13, >=1.48: older ones
# pin a greenlet that does not build there)
PLAYWRIGHT_MIN="${VASTCAP_PLAYWRIGHT_MIN:-$(python3 -c 'import sys; print("1.48.0" if sys.version_info >= (3, 13) else "1.40.0")')}"

ensure_project_env

# Debian's Chromium for the browser tests (Playwright's own browser download is not reachable).
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium || true
fi
if [ ! -x /usr/bin/chromium ]; then
  if [ "${CI:-}" = "true" ]; then die "chromium is missing and could not be installed"; fi
  log "WARNING: /usr/bin/chromium is missing; browser tests will be skipped (apt-get install chromium)"
fi
# Debian's chromedriver (matching its Chromium) for the Selenium tests (Selenium Manager cannot download one).
if [ ! -x /usr/bin/chromedriver ]; then
  apt_install chromium-driver || true
fi
if [ ! -x /usr/bin/chromedriver ]; then
  if [ "${CI:-}" = "true" ]; then die "chromium-driver (/usr/bin/chromedriver) is missing and could not be installed"; fi
  log "WARNING: /usr/bin/chromedriver is missing; Selenium tests will be skipped (apt-get install chromium-driver)"
fi
# Redis for the fleet-mode tests.
if ! command -v redis-server >/dev/null; then
  apt_install redis-server || true
fi
if ! command -v redis-server >/dev/null; then
  if [ "${CI:-}" = "true" ]; then die "redis-server is missing and could not be installed"; fi
  log "WARNING: redis-server is missing; fleet-mode tests will be skipped (apt-get install redis-server)"
fi

run_pytest() {  # run_pytest LABEL ARGS...: a pytest run that must run tests and pass
  local label="$1"; shift
  log "pytest: $label"
  set +e
  "$@"
  local rc=$?
  set -e
  [ $rc -eq 5 ] && die "pytest ($label) collected no tests"
  [ $rc -ne 0 ] && die "pytest ($label) failed with exit code $rc"
  return 0
}

log "ruff"
lint_dirs=()
for d in vastcap_guard tests examples bench; do [ -d "$d" ] && lint_dirs+=("$d"); done
"$PY" -m ruff check "${lint_dirs[@]}"
log "mypy (strict, on the package)"
"$PY" -m mypy

# The release check runs beside the main pytest run (about 30 s, mostly a pip install from pip's
# cache): build the sdist and wheel without warnings, twine check, the sdist's contents, and the
# wheel installed into a fresh virtualenv running `vastcap-guard --version`, `sandbox` + `check`
# and `demo` from a temporary directory. See scripts/check_dist.sh.
DIST_PID=""
if [ "${VASTCAP_SKIP_DIST:-}" != "1" ]; then
  DIST_LOG="$(mktemp "${TMPDIR:-/tmp}/vastcap-dist-log.XXXXXX")"
  log "release check: started in the background (log: $DIST_LOG)"
  bash scripts/check_dist.sh >"$DIST_LOG" 2>&1 &
  DIST_PID=$!
  trap '[ -n "$DIST_PID" ] && kill "$DIST_PID" 2>/dev/null; true' EXIT
fi

# No reactor in this run (pytest-twisted off): core, CLI, sandbox, Playwright, Scrapy end to end
# (each crawl in its own process, in every reactor mode). Most tests wait on crawls, browsers and
# intervals rather than compute, so several workers share 2 cores well; a module runs in one worker.
WORKERS="${VASTCAP_TEST_WORKERS:-3}"
run_pytest "main" "$PY" -m pytest -p no:twisted tests --ignore=tests/twisted -n "$WORKERS" --dist loadfile "$@"

if [ -n "$DIST_PID" ]; then
  log "release check: waiting for it"
  set +e
  wait "$DIST_PID"
  rc=$?
  set -e
  DIST_PID=""
  cat "$DIST_LOG" >&2
  rm -f "$DIST_LOG"
  [ $rc -ne 0 ] && die "the release check (scripts/check_dist.sh) failed with exit code $rc"
fi

# In-process Scrapy tests driven by pytest-twisted on the asyncio reactor.
if [ -d tests/twisted ]; then
  run_pytest "in-process Scrapy, asyncio reactor" "$PY" -m pytest --reactor=asyncio tests/twisted
fi

# The oldest supported Scrapy, in its own virtualenv.
if [ -d tests/scrapy ] && [ "${VASTCAP_SKIP_SCRAPY_MIN:-}" != "1" ]; then
  MINV="$ROOT/.venv-scrapy-min"
  make_venv "$MINV"
  if [ "$("$MINV/bin/python" -c 'import scrapy; print(scrapy.__version__)' 2>/dev/null)" != "$SCRAPY_MIN" ] \
      || ! "$MINV/bin/python" -c 'import spidermon' 2>/dev/null; then
    log "installing Scrapy $SCRAPY_MIN into $MINV"
    "$MINV/bin/python" -m pip install -q -e ".[scrapy,test]" "scrapy==$SCRAPY_MIN"
  fi
  run_pytest "Scrapy $SCRAPY_MIN" "$MINV/bin/python" -m pytest -p no:twisted tests/scrapy tests/scrapy_playwright \
    tests/spidermon
  if [ -d tests/twisted ]; then
    run_pytest "Scrapy $SCRAPY_MIN in-process" "$MINV/bin/python" -m pytest --reactor=asyncio tests/twisted
  fi
fi

# The oldest supported Playwright, in its own virtualenv: the whole of tests/playwright (about a
# minute and a half), alone (no other browser run at the same time). Forks cannot share this
# virtualenv (Playwright 1.40 pins greenlet 3.0.1, the forks need 3.1+): they have their own below.
if [ -d tests/playwright ] && [ "${VASTCAP_SKIP_PLAYWRIGHT_MIN:-}" != "1" ]; then
  PWV="$ROOT/.venv-playwright-min"
  make_venv "$PWV"
  if [ "$("$PWV/bin/python" -c 'from importlib.metadata import version; print(version("playwright"))' 2>/dev/null)" \
      != "$PLAYWRIGHT_MIN" ]; then
    log "installing Playwright $PLAYWRIGHT_MIN into $PWV"
    "$PWV/bin/python" -m pip install -q -e . "playwright==$PLAYWRIGHT_MIN" "pytest>=8" "pytest-asyncio>=0.23"
  fi
  run_pytest "Playwright $PLAYWRIGHT_MIN" "$PWV/bin/python" -m pytest -p no:twisted tests/playwright
fi

# Only a fork installed (patchright, no playwright), in its own virtualenv: the adapter imports, and
# the fork's scripts are checked, tracked and stopped like Playwright's (under a minute).
if [ -d tests/playwright ] && [ "${VASTCAP_SKIP_FORK_ONLY:-}" != "1" ]; then
  FOV="$ROOT/.venv-fork-only"
  make_venv "$FOV"
  if ! "$FOV/bin/python" -c 'import importlib.metadata as m; [m.version(d) for d in ("vastcap-guard", "patchright", "pytest")]' \
      2>/dev/null; then
    log "installing patchright (and no Playwright) into $FOV"
    "$FOV/bin/python" -m pip install -q -e . patchright "pytest>=8" "pytest-asyncio>=0.23"
  fi
  if "$FOV/bin/python" -c 'import playwright.sync_api' 2>/dev/null; then
    die "$FOV must not hold Playwright (it tests an install with only a fork)"
  fi
  run_pytest "patchright only" "$FOV/bin/python" -m pytest -p no:twisted tests/playwright/test_playwright_fork_only.py \
    tests/playwright/test_playwright_forks.py tests/playwright/test_playwright_exit_noise.py \
    tests/playwright/test_playwright_private_api.py
fi

# camoufox, in its own virtualenv (it requires playwright<1.63): its launch helpers and context
# manager go through the guard's hooks (its browser cannot be downloaded here; a few seconds).
if [ -d tests/playwright ] && [ "${VASTCAP_SKIP_CAMOUFOX:-}" != "1" ]; then
  CFV="$ROOT/.venv-camoufox"
  make_venv "$CFV"
  if ! "$CFV/bin/python" -c 'import importlib.metadata as m; [m.version(d) for d in ("vastcap-guard", "camoufox", "pytest")]' \
      2>/dev/null; then
    log "installing camoufox into $CFV"
    "$CFV/bin/python" -m pip install -q -e . camoufox "pytest>=8" "pytest-asyncio>=0.23"
  fi
  run_pytest "camoufox" "$CFV/bin/python" -m pytest -p no:twisted tests/playwright/test_playwright_camoufox.py
fi

log "all checks passed"
