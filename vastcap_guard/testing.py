"""Test your own spiders against the sandbox: :func:`run_spider` runs one crawl in a child process.

Twisted's reactor cannot be restarted in a process, so a test suite that runs several crawls runs
each in its own process. ``run_spider`` does that and returns what a test needs::

    from vastcap_guard.testing import run_spider

    def test_my_spider_refuses_to_start(vastcap_sandbox):        # the pytest fixture
        vastcap_sandbox.set_balance(vastcap_sandbox.key, 0)
        result = run_spider("myproject.spiders.shop:ShopSpider", sandbox=vastcap_sandbox)
        assert result.finish_reason == "vastcap_low_balance"
        assert result.stats.get("downloader/request_count") is None   # nothing was sent

The crawl gets ``VASTCAP_API_URL`` and ``VASTCAP_API_KEY`` from the sandbox, the guard enabled
(the add-on) unless your settings say otherwise, and your ``settings`` on top. Pass ``project=``
(the directory holding ``scrapy.cfg``) to run inside a Scrapy project with its settings. This module
imports nothing of Scrapy; the child process does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SpiderResult", "run_spider"]


@dataclass(frozen=True)
class SpiderResult:
    """What one crawl ended with."""

    #: Scrapy's finish reason: ``"finished"``, ``"vastcap_low_balance"``...
    finish_reason: str | None
    #: the crawl's stats (values made JSON-friendly: datetimes as ISO strings)
    stats: dict[str, Any] = field(default_factory=dict)
    #: the crawl's log (stderr of the child process)
    log: str = ""
    #: the child process's exit status (0 for a crawl that ran, whatever its finish reason)
    returncode: int = 0

    @property
    def stopped_by_guard(self) -> bool:
        return bool(self.finish_reason and self.finish_reason.startswith("vastcap_"))


def _spider_path(spider: object) -> str:
    if isinstance(spider, str):
        return spider
    module, name = getattr(spider, "__module__", None), getattr(spider, "__qualname__", None)
    if not module or not name or module == "__main__" or "<locals>" in name:
        raise ValueError("run_spider() needs an importable spider: 'package.module:SpiderClass', a class "
                         "defined at module level, or a spider name with project=.")
    return f"{module}:{name}"


def run_spider(
    spider: object,
    *,
    sandbox: Any = None,
    settings: Mapping[str, Any] | None = None,
    spider_kwargs: Mapping[str, Any] | None = None,
    project: str | os.PathLike[str] | None = None,
    key: str | None = None,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
) -> SpiderResult:
    """Run ``spider`` (``"module:Class"``, a spider class, or with ``project=`` a spider name) to its
    end in a child process and return its finish reason, stats and log.

    ``sandbox`` (a running :class:`vastcap_guard.sandbox.Sandbox`) supplies the API URL and, unless
    ``key`` is given, its first account's key. Raises :class:`TimeoutError` when the crawl runs
    longer than ``timeout`` seconds (the child is killed) and :class:`RuntimeError` when the child
    could not run the crawl at all (the log is in the message).
    """
    child_env = {k: v for k, v in (env if env is not None else os.environ).items()
                 if not k.startswith(("VASTCAP_", "SCRAPY_SETTINGS_MODULE"))}
    # the child imports what this process can: the test's modules and packages
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    if sandbox is not None:
        child_env["VASTCAP_API_URL"] = sandbox.url
        child_env["VASTCAP_API_KEY"] = key or sandbox.key or ""
    elif key is not None:
        child_env["VASTCAP_API_KEY"] = key
    with tempfile.TemporaryDirectory(prefix="vastcap-run-spider-") as tmp:
        out = Path(tmp) / "result.json"
        job = {"spider": spider if project is not None and isinstance(spider, str) else _spider_path(spider),
               "project": str(project) if project is not None else None, "settings": dict(settings or {}),
               "spider_kwargs": dict(spider_kwargs or {}), "out": str(out)}
        try:
            proc = subprocess.run([sys.executable, "-m", "vastcap_guard.testing", json.dumps(job)],
                                  cwd=str(project) if project is not None else None, env=child_env,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"the crawl did not end within {timeout:g} s") from exc
        log = proc.stdout + proc.stderr
        if not out.exists():
            raise RuntimeError(f"the crawl could not run (exit status {proc.returncode}):\n{log[-4000:]}")
        data = json.loads(out.read_text())
    return SpiderResult(data.get("finish_reason"), data.get("stats", {}), log, proc.returncode)


# -- the child process ------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _child(job: dict[str, Any]) -> int:  # pragma: no cover - runs in the child process
    from scrapy import signals
    from scrapy.crawler import CrawlerProcess
    from scrapy.utils.misc import load_object
    from scrapy.utils.project import get_project_settings

    if job["project"] is not None:
        os.chdir(job["project"])
        sys.path.insert(0, job["project"])
        base = get_project_settings()
    else:
        from scrapy.settings import Settings

        base = Settings()
    enables = {"ADDONS", "EXTENSIONS"}
    user = job["settings"]
    if job["project"] is None and not enables & set(user):
        base.set("ADDONS", {"vastcap_guard.scrapy.Addon": 500}, priority="cmdline")
    base.setdict({"TELNETCONSOLE_ENABLED": False, **user}, priority="cmdline")
    process = CrawlerProcess(base, install_root_handler=True)
    target = job["spider"] if job["project"] is not None and ":" not in job["spider"] else \
        load_object(job["spider"].replace(":", "."))
    crawler = process.create_crawler(target)
    reasons: dict[str, str] = {}

    def closed(spider: Any, reason: str) -> None:
        reasons["finish_reason"] = reason

    crawler.signals.connect(closed, signal=signals.spider_closed)
    process.crawl(crawler, **job["spider_kwargs"])
    process.start()
    stats = crawler.stats.get_stats() if crawler.stats is not None else {}
    result = {"finish_reason": reasons.get("finish_reason") or stats.get("finish_reason"),
              "stats": {k: _plain(v) for k, v in stats.items()}}
    Path(job["out"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_child(json.loads(sys.argv[1])))
