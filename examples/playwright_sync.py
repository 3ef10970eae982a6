"""A guarded Playwright script (sync API) that runs offline against the VastCap sandbox.

    python examples/playwright_sync.py
    CHROMIUM_PATH=/path/to/chromium python examples/playwright_sync.py     # a browser of your choice

It starts the sandbox (a local VastCap API with a $10 account) and a local demo site, then browses
the site under ``vastcap_guard.playwright.guard``. Half-way through, the sandbox balance drops to
zero, as if another job had spent it: the guard notices within one check interval, closes the
browser and the guarded function raises ``LowBalanceError``.

With a real account, drop the sandbox: set ``VASTCAP_API_KEY`` and call ``guard()`` with no key.
"""

from __future__ import annotations

import logging
import os
import sys

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from vastcap_guard import GuardError, LowBalanceError
from vastcap_guard.playwright import guard
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.site import LocalSite

# The browser: the one at $CHROMIUM_PATH, else Debian's /usr/bin/chromium, else Playwright's own
# (`python -m playwright install chromium`, which needs the network once). As root, Chromium needs
# --no-sandbox.
SYSTEM_CHROMIUM = "/usr/bin/chromium"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or (SYSTEM_CHROMIUM if os.path.exists(SYSTEM_CHROMIUM) else "")
LAUNCH = (
    {"executable_path": CHROMIUM, "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]}
    if CHROMIUM
    else {}
)
NO_BROWSER = (
    "No browser for Playwright: install Playwright's own with `python -m playwright install chromium` "
    "(it downloads it), or point this example at an installed Chromium or Chrome: "
    "CHROMIUM_PATH=/path/to/chromium python {script}"
)


def no_browser(exc: Exception) -> bool:
    """Playwright could not find the browser to launch (not installed, or a wrong path)."""
    return "executable doesn't exist" in str(exc).lower()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with Sandbox() as sandbox, LocalSite(pages=200) as site:

        @guard(sandbox.key, api_url=sandbox.url, interval=1, min_balance="0.01")
        def scrape() -> list[str]:
            titles = []
            with sync_playwright() as p:
                browser = p.chromium.launch(**LAUNCH)  # checked and tracked by the guard
                page = browser.new_page()
                for n in range(200):
                    page.goto(site.page_url(n))
                    titles.append(page.title())
                    if n == 20:
                        print("-- the account is emptied elsewhere; the guard stops this script --")
                        sandbox.set_balance(sandbox.key, 0)
                browser.close()
            return titles

        try:
            titles = scrape()
        except LowBalanceError as exc:
            print(f"stopped: {exc.reason}, balance {exc.balance} (minimum {exc.minimum})")
            print(f"pages visited before the stop: {site.request_count}")
            return 0
        except GuardError as exc:
            print(f"refused: {exc.reason}: {exc}")
            return 1
        except PlaywrightError as exc:
            if not no_browser(exc):
                raise
            print(NO_BROWSER.format(script=sys.argv[0]), file=sys.stderr)
            return 2
        print(f"finished without a stop ({len(titles)} pages)")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
