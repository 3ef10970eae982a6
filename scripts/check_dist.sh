#!/usr/bin/env bash
# The release check: build the sdist and the wheel (no warnings), `twine check` them, make sure the
# sdist holds every tracked file a packager needs, then install the wheel into a fresh virtualenv
# and run the installed `vastcap-guard` from a temporary directory (never the source tree):
# --version, a `sandbox` started from that virtualenv with `check` against it, and `demo`.
# Usage: scripts/check_dist.sh [OUTDIR]   (scripts/test.sh runs it; pip's cache makes it fast)
source "$(dirname "$0")/_env.sh"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/vastcap-dist.XXXXXX")"
OUT="${1:-$WORK/dist}"
SANDBOX_PID=""
cleanup() {
  if [ -n "$SANDBOX_PID" ]; then kill "$SANDBOX_PID" 2>/dev/null || true; wait "$SANDBOX_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

START=$SECONDS
step() { printf "==> dist (%ss): %s\n" "$((SECONDS - START))" "$*" >&2; }

# -- build ------------------------------------------------------------------------------------------
# From a copy of the files git knows (tracked or new, not ignored), as a fresh clone would be: a
# stale *.egg-info or build/ in the checkout would otherwise slip files into the sdist.
SRC="$ROOT"
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  SRC="$WORK/src"
  git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
    | "$PY" -c '
import os, shutil, sys
root, dest = sys.argv[1], sys.argv[2]
for rel in sys.stdin.buffer.read().decode().split("\0"):
    if rel and os.path.isfile(os.path.join(root, rel)):
        os.makedirs(os.path.dirname(os.path.join(dest, rel)) or dest, exist_ok=True)
        shutil.copy2(os.path.join(root, rel), os.path.join(dest, rel))
' "$ROOT" "$SRC"
fi
step "python -m build (the sdist, then the wheel from the sdist)"
mkdir -p "$OUT"
rm -f "$OUT"/vastcap_guard-*
# PYTHONDONTWRITEBYTECODE (set in some CI images) only makes setuptools warn that it skips bytecode
if ! env -u PYTHONDONTWRITEBYTECODE "$PY" -m build --outdir "$OUT" "$SRC" >"$WORK/build.log" 2>&1; then
  tail -n 40 "$WORK/build.log" >&2
  die "python -m build failed"
fi
# a warning anywhere in the build (deprecated metadata, manifest patterns that match nothing...);
# file names such as test_playwright_warnings.py do not count
if grep -inE '(^|[^a-z_])warn(ing)?s?[]: ]|deprecat' "$WORK/build.log" | grep -vE '^[0-9]+:(copying|adding) ' >"$WORK/warnings"; then
  cat "$WORK/warnings" >&2
  die "python -m build printed warnings"
fi
SDIST="$(ls "$OUT"/vastcap_guard-*.tar.gz)"
WHEEL="$(ls "$OUT"/vastcap_guard-*-py3-none-any.whl)"

step "twine check --strict"
"$PY" -m twine check --strict "$SDIST" "$WHEEL" >"$WORK/twine.log" 2>&1 || { cat "$WORK/twine.log" >&2; die "twine check failed"; }

step "the sdist holds every tracked file of the package, tests, docs, examples, scripts and bench"
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$ROOT" ls-files -- vastcap_guard tests docs examples scripts bench LICENSE CHANGELOG.md README.md \
    pyproject.toml MANIFEST.in >"$WORK/tracked"
  "$PY" - "$SDIST" "$WORK/tracked" <<'EOF' || die "the sdist is incomplete (see above)"
import sys, tarfile
names = tarfile.open(sys.argv[1]).getnames()
root = names[0].split("/")[0]
inside = {n.split("/", 1)[1] for n in names if "/" in n}
tracked = [line.strip() for line in open(sys.argv[2]) if line.strip()]
missing = [f for f in tracked if f not in inside]
stray = sorted(n for n in inside if n.endswith((".pyc", ".pyo")) or "__pycache__" in n)
for f in missing:
    print(f"missing from {root}.tar.gz: {f}", file=sys.stderr)
for f in stray:
    print(f"bytecode in {root}.tar.gz: {f}", file=sys.stderr)
sys.exit(1 if missing or stray else 0)
EOF
else
  step "(no git checkout: sdist contents not compared)"
fi

# -- install the wheel into a fresh virtualenv, away from the source tree ----------------------------
VENV="$WORK/venv"
step "fresh virtualenv with the wheel and the [scrapy] extra"
python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv || true; python3 -m venv "$VENV"; } \
  || die "python3 -m venv does not work here"
cd "$WORK"   # nothing of the source tree is importable from here
unset PYTHONPATH
"$VENV/bin/python" -m pip install -q --no-compile "${WHEEL}[scrapy]" >"$WORK/pip.log" 2>&1 \
  || { grep -v "is ignored" "$WORK/pip.log" | tail -n 20 >&2; die "pip install of the wheel failed"; }
EXE="$VENV/bin/vastcap-guard"

where="$("$VENV/bin/python" -c 'import vastcap_guard, os; print(os.path.dirname(vastcap_guard.__file__))')"
case "$where" in
  "$VENV"/*) ;;
  *) die "the installed vastcap_guard comes from $where, not from the wheel" ;;
esac

step "vastcap-guard --version"
want="vastcap-guard $("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import vastcap_guard; print(vastcap_guard.__version__)' "$ROOT")"
got="$("$EXE" --version)" || die "vastcap-guard --version failed"
[ "$got" = "$want" ] || die "vastcap-guard --version printed '$got', expected '$want'"

step "vastcap-guard sandbox, then check against it"
PORT="$("$VENV/bin/python" -c 'from vastcap_guard.sandbox import free_port; print(free_port())')"
URL="http://127.0.0.1:$PORT/api/solver"
KEY="vc_dist_check_key_0000000001"
"$EXE" sandbox --port "$PORT" --account "$KEY=1.5" >"$WORK/sandbox.log" 2>&1 &
SANDBOX_PID=$!
for _ in $(seq 100); do
  "$EXE" sandbox calls --count --api-url "$URL" >/dev/null 2>&1 && break
  kill -0 "$SANDBOX_PID" 2>/dev/null || { cat "$WORK/sandbox.log" >&2; die "vastcap-guard sandbox exited"; }
  sleep 0.1
done
out="$(VASTCAP_API_KEY="$KEY" "$EXE" check --api-url "$URL")" || die "vastcap-guard check failed against the sandbox: $out"
case "$out" in *'$1.50'*) ;; *) die "vastcap-guard check printed '$out'" ;; esac
"$EXE" sandbox set-balance "$KEY" 0 --api-url "$URL" >/dev/null || die "vastcap-guard sandbox set-balance failed"
set +e
VASTCAP_API_KEY="$KEY" "$EXE" check -q --api-url "$URL" 2>/dev/null
rc=$?
set -e
[ $rc -eq 10 ] || die "vastcap-guard check exited $rc on an empty account, expected 10"
kill "$SANDBOX_PID"; wait "$SANDBOX_PID" 2>/dev/null || true; SANDBOX_PID=""

step "vastcap-guard demo (the example project shipped in the wheel)"
if ! "$EXE" demo --plain --balance 0.01 >"$WORK/demo.log" 2>&1; then
  tail -n 30 "$WORK/demo.log" >&2
  die "vastcap-guard demo failed from the installed wheel"
fi
grep -q "finish_reason: vastcap_low_balance" "$WORK/demo.log" || { tail -n 30 "$WORK/demo.log" >&2; die "the demo did not stop on vastcap_low_balance"; }

step "ok: $(basename "$SDIST") and $(basename "$WHEEL")"
