"""A guarded Selenium script that runs offline against the VastCap sandbox.

    python examples/selenium_script.py

It starts the sandbox (a local VastCap API with a $10 account) and a local demo site, then browses
the site with Chrome under ``vastcap_guard.selenium.guard``. Half-way through, the sandbox balance
drops to zero, as if another job had spent it: the guard notices within one check interval, stops
the driver (the call in progress fails at once) and the guarded function raises
``LowBalanceError``. No chromedriver or browser is left running.

With a real account, drop the sandbox: set ``VASTCAP_API_KEY`` and call ``guard()`` with no key.
"""

from __future__ import annotations

import logging
import os

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from vastcap_guard import GuardError, LowBalanceError
from vastcap_guard.sandbox import Sandbox
from vastcap_guard.selenium import guard
from vastcap_guard.site import LocalSite

# Debian's chromium and chromedriver when installed; else Selenium finds (or downloads) its own
SYSTEM_CHROMIUM, SYSTEM_CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def new_driver() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"):
        options.add_argument(arg)
    if os.path.exists(SYSTEM_CHROMIUM):
        options.binary_location = SYSTEM_CHROMIUM
    service = Service(SYSTEM_CHROMEDRIVER) if os.path.exists(SYSTEM_CHROMEDRIVER) else Service()
    return webdriver.Chrome(service=service, options=options)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with Sandbox() as sandbox, LocalSite(pages=200) as site:

        @guard(sandbox.key, api_url=sandbox.url, interval=1, min_balance="0.01")
        def scrape() -> list[str]:
            titles = []
            driver = new_driver()  # checked and watched by the guard
            try:
                for n in range(200):
                    driver.get(site.page_url(n))
                    titles.append(driver.title)
                    if n == 20:
                        print("-- the account is emptied elsewhere; the guard stops this script --")
                        sandbox.set_balance(sandbox.key, 0)
            finally:
                driver.quit()
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
        print(f"finished without a stop ({len(titles)} pages)")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
