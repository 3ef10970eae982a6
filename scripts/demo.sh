#!/usr/bin/env bash
# The main job: a real Scrapy crawl against a local site and the local VastCap sandbox, stopped by
# the guard when the balance runs out. No key, no network. Usage: scripts/demo.sh [demo options]
source "$(dirname "$0")/_env.sh"
ensure_project_env
exec "$VENV/bin/vastcap-guard" demo "$@"
