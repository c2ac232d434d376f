"""``mitosis browse --serve``: the site over HTTP on 127.0.0.1 (the standard library's
``http.server``), rebuilt whenever an experiment's branch moves."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..exceptions import MitosisError, SiteError
from ..store.repo import Store
from .build import build, default_site, tips

__all__ = ["serve"]


class _Handler(SimpleHTTPRequestHandler):
    """Files of the site, never cached (they change as trials come in), without a log line
    per request."""

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(
    out: str | os.PathLike[str] | None,
    store: str | os.PathLike[str] | None,
    port: int = 8000,
    *,
    interval: float = 1.0,
    say: Callable[[str], None] = print,
    ready: threading.Event | None = None,
) -> None:
    """Build the site, serve it at ``http://127.0.0.1:PORT/`` until interrupted, and rebuild it
    (incrementally) when a branch tip moves; the tips are read every ``interval`` seconds.

    Raises:
        SiteError: the port cannot be bound.
        StoreError: the store cannot be read.
    """
    with Store.open(store) as st:
        folder = Path(out) if out is not None else default_site(st)
        seen = tips(st)
        site = build(st, folder)
    handler = functools.partial(_Handler, directory=str(site.path))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise SiteError(
            f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}; give another --port "
            "(0 picks a free one)"
        ) from None
    stop = threading.Event()

    def watch() -> None:
        nonlocal seen
        failure = ""
        while not stop.wait(interval):
            try:
                with Store.open(store) as st:
                    now = tips(st)
                    if now != seen:
                        rebuilt = build(st, folder)
                        seen = now
                        failure = ""
                        say(
                            f"rebuilt: {len(rebuilt.new_trials)} new trial page(s), "
                            f"{rebuilt.trials} trials in all"
                        )
            except (MitosisError, OSError) as exc:  # tried again at the next look
                if str(exc) != failure:  # said once, not at every look
                    failure = str(exc)
                    say(f"could not rebuild the site: {exc}")

    watcher = threading.Thread(target=watch, name="mitosis-site-watch", daemon=True)
    watcher.start()
    say(
        f"serving {site.path} at http://127.0.0.1:{server.server_port}/ "
        f"({site.trials} trials; Ctrl-C stops)"
    )
    if ready is not None:
        ready.set()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
