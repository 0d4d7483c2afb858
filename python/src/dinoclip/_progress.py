"""A progress bar: tqdm when it is installed, else a plain one-line counter on stderr."""

from __future__ import annotations

import sys
import time


class _Simple:
    def __init__(self, total=None, desc="", unit="it", disable=False):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.disable = disable or not sys.stderr.isatty()
        self._t0 = self._last = time.monotonic()

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        if not self.disable and (now - self._last > 0.5 or (self.total and self.n >= self.total)):
            self._last = now
            rate = self.n / max(now - self._t0, 1e-9)
            tot = f"/{self.total}" if self.total else ""
            sys.stderr.write(f"\r{self.desc}: {self.n}{tot} {self.unit} ({rate:.1f} {self.unit}/s)")
            sys.stderr.flush()

    def close(self):
        if not self.disable:
            sys.stderr.write("\n")
            sys.stderr.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def progress(total=None, desc="", unit="it", disable=False):
    """A context-manager progress bar with ``update(n)``."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Simple(total=total, desc=desc, unit=unit, disable=disable)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, smoothing=0.1)
