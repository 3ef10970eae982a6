"""``import vastcap_guard`` stays light: no Scrapy, Twisted, Playwright, Selenium or Crawlee."""

from __future__ import annotations

import subprocess
import sys


def test_core_import_pulls_no_framework() -> None:
    code = (
        "import sys, vastcap_guard, vastcap_guard.sandbox, vastcap_guard.cli, vastcap_guard.signals, vastcap_guard.site,"
        " vastcap_guard.scope;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'scrapy', 'twisted', 'playwright', 'greenlet', 'selenium', 'undetected_chromedriver', 'crawlee'});"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""


def test_public_api_names() -> None:
    import vastcap_guard

    for name in ("BalanceClient", "GuardError", "InvalidKeyError", "AccountDisabledError", "LowBalanceError",
                 "BudgetExceededError", "ApiUnavailableError", "ApiError"):
        assert hasattr(vastcap_guard, name)
    reasons = {cls.reason for cls in vastcap_guard.REASONS.values()}
    assert {"vastcap_invalid_key", "vastcap_account_disabled", "vastcap_low_balance", "vastcap_budget_exceeded",
            "vastcap_api_unavailable", "vastcap_api_error"} <= reasons
    assert all(issubclass(c, vastcap_guard.GuardError) for c in vastcap_guard.REASONS.values())


def test_metrics_stay_optional() -> None:
    """The CLI imports prometheus-client only for --metrics-port; the metrics module imports no framework."""
    code = (
        "import sys, vastcap_guard, vastcap_guard.cli;"
        "print('prometheus_client' in sys.modules);"
        "import vastcap_guard.metrics;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'scrapy', 'twisted', 'playwright', 'greenlet'});"
        "print('prometheus_client' in sys.modules, ','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[:2] == ["False", "True "]
