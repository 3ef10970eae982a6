"""Serve the bundled demo site on loopback, for running the example project by hand.

    python serve_site.py                      # http://127.0.0.1:8788/, 500 pages, a captcha on every 5th
    python serve_site.py --port 0 --pages 2000 --captcha-every 3

Page /page/N links to pages 2N+1 and 2N+2; pages with N % K == 0 carry a reCAPTCHA widget. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import sys
import time

from vastcap_guard.site import LocalSite


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8788, help="port on 127.0.0.1 (default 8788; 0 picks one)")
    p.add_argument("--pages", type=int, default=500, help="number of pages (default 500)")
    p.add_argument("--captcha-every", type=int, default=5, metavar="K",
                   help="a captcha on page N when N %% K == 0 (default 5)")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each answer (default 0)")
    args = p.parse_args(argv)
    with LocalSite(args.pages, captcha_every=args.captcha_every, delay=args.delay, port=args.port) as site:
        print(f"demo site on {site.url} ({args.pages} pages, a captcha on every {args.captcha_every}th); "
              "Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print(f"\n{site.request_count} requests served", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
