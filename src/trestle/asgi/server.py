"""uvicorn's server, exiting 0 after a signal-initiated shutdown that completed.

uvicorn (0.29+) re-raises the SIGINT/SIGTERM it handled once the shutdown is done, so a process stopped
cleanly by its supervisor exits -15, which process managers (systemd, Kubernetes, the platform's own
supervisor) report as a failure. Both the model server and the platform run this subclass instead.

The ``idna`` codec is imported here, before any thread starts: binding the socket resolves the host,
which imports ``encodings.idna`` (and ``stringprep``) lazily, on the loop's thread, while the model's
``load`` imports its own modules in a worker thread; CI saw that pair end in ``KeyError:
'stringprep'`` inside the import system and a server that exited at startup.
"""

from __future__ import annotations

import codecs
import contextlib
import encodings.idna  # noqa: F401  (see above)
import signal
import threading
from collections.abc import Generator

import uvicorn

codecs.lookup("idna")  # the codec registry's cache too, so the lookup never imports


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
