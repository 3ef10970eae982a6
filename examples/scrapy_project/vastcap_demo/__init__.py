"""Example Scrapy project: a crawl that pays for captchas, guarded by vastcap-guard."""
