"""Serve the bundled demo site on loopback, for running the example project by hand.

    python serve_site.py                      # http://127.0.0.1:8788/, 500 pages, a captcha on every 5th
    python serve_site.py --port 0 --pages 2000 --captcha-every 3

Page /page/N links to pages 2N+1 and 2N+2; pages with N % K == 0 carry a reCAPTCHA widget. Ctrl-C
stops it. The same as ``python -m vastcap_guard.site --captcha-every 5``.
"""

from __future__ import annotations

import sys

from vastcap_guard.site import main

if __name__ == "__main__":
    sys.exit(main(["--captcha-every", "5", *sys.argv[1:]]))
