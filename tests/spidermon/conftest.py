"""The Spidermon tests reuse the Scrapy tests' crawl runner (``tests/scrapy/scrapy_crawl.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scrapy"))
