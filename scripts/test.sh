#!/usr/bin/env bash
# The whole test suite: lint, types, and every pytest run (core, Scrapy in each reactor mode,
# Scrapy's oldest supported version, real headless Chromium). Installs what it needs.
# Usage: scripts/test.sh [extra pytest args for the main run]
source "$(dirname "$0")/_env.sh"

SCRAPY_MIN="${VASTCAP_SCRAPY_MIN:-2.13.4}"   # the oldest Scrapy we support (pyproject: scrapy>=2.13)

ensure_project_env

# Debian's Chromium for the browser tests (Playwright's own browser download is not reachable).
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium || true
fi
if [ ! -x /usr/bin/chromium ]; then
  if [ "${CI:-}" = "true" ]; then die "chromium is missing and could not be installed"; fi
  log "WARNING: /usr/bin/chromium is missing; browser tests will be skipped (apt-get install chromium)"
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

log "all checks passed"
