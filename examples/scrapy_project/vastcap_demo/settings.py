"""Settings for the example project.

Everything that differs between machines comes from the environment (or ``-s NAME=value``):

- ``VASTCAP_API_KEY``: your VastCap key (read from the environment by the guard itself);
- ``VASTCAP_API_URL``: the solver API; defaults to a local sandbox (``vastcap-guard sandbox --port 8787``)
  so that trying the example never spends real money;
- ``DEMO_SITE_URL``: the site to crawl (or ``scrapy crawl captchas -a site_url=...``).
"""

import os

BOT_NAME = "vastcap_demo"
SPIDER_MODULES = ["vastcap_demo.spiders"]
NEWSPIDER_MODULE = "vastcap_demo.spiders"

# -- the guard --------------------------------------------------------------------------------
# BalanceGuard checks the account before the first request and every VASTCAP_CHECK_INTERVAL
# seconds, and closes the spider (finish_reason vastcap_low_balance, vastcap_invalid_key...)
# when the account can no longer pay.
EXTENSIONS = {
    "vastcap_guard.scrapy.BalanceGuard": 500,
    # writes the crawl's stats to DEMO_RESULT_FILE when that is set (used by `vastcap-guard demo`)
    "vastcap_demo.extensions.ResultFile": 900,
}
# CostGuardMiddleware drops requests that carry meta["vastcap_cost"] (the createTask calls) once
# the guard has tripped or the estimated spend would take the balance below VASTCAP_MIN_BALANCE.
# A low number puts it next to the engine: a dropped request never reaches other middlewares.
DOWNLOADER_MIDDLEWARES = {
    "vastcap_guard.scrapy.CostGuardMiddleware": 50,
}

VASTCAP_API_URL = os.environ.get("VASTCAP_API_URL", "http://127.0.0.1:8787/api/solver")
VASTCAP_CHECK_INTERVAL = float(os.environ.get("VASTCAP_CHECK_INTERVAL", "5"))
# VASTCAP_MIN_BALANCE: left at its default, $0.001 (the API's own minimum for solving).
# What one solved captcha costs (USD); the spider puts it in meta["vastcap_cost"].
CAPTCHA_COST = os.environ.get("CAPTCHA_COST", "0.002")

# -- the crawl --------------------------------------------------------------------------------
DEMO_SITE_URL = os.environ.get("DEMO_SITE_URL", "http://127.0.0.1:8788/")
# How often to ask getTaskResult while a captcha is being solved, and when to give up.
CAPTCHA_POLL_INTERVAL = 0.25
CAPTCHA_TIMEOUT = 60.0

ROBOTSTXT_OBEY = False
CONCURRENT_REQUESTS = 8
DOWNLOAD_DELAY = float(os.environ.get("DEMO_DOWNLOAD_DELAY", "0.05"))
# API calls go to their own download slot (see solver.py): the site's politeness delay does not
# slow down solving, and the API gets its own concurrency limit.
DOWNLOAD_SLOTS = {
    "vastcap-api": {"concurrency": 4, "delay": 0},
}
# no extra listening ports for an example (the telnet console; Scrapy 2.19's remote control)
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
FEED_EXPORT_ENCODING = "utf-8"
