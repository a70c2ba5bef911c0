"""Process-level hooks of a Locust run: where Ctrl-C lands, and the order of exit hooks."""

from __future__ import annotations

import atexit
import signal
import threading
import weakref
from typing import Any

import gevent
from gevent import getcurrent


class _ExitOrderAnchor:
    """A long-lived object for the finalizer that fixes the order of exit hooks (see below)."""


_EXIT_ORDER_ANCHOR = _ExitOrderAnchor()


def register_exit_hook_before_finalizers(hook: Any) -> None:
    """Register `hook` with atexit so that it runs before the finalizers of `weakref.finalize`.

    atexit runs hooks last-registered-first, and `weakref.finalize` registers its own exit hook when the first
    finalizer of the process is made. urllib3 makes one per connection pool, which empties the pool at exit.
    The sink's Elasticsearch client is created later than this hook (in the delivery greenlet), so without
    this the pool was emptied first, and a final flush at exit whose connection was back in the pool then
    waited for one until its deadline and spooled everything. A finalizer made here (it does nothing, and
    not at exit) puts weakref's exit hook below this one.
    """
    weakref.finalize(_EXIT_ORDER_ANCHOR, int).atexit = False
    atexit.register(hook)


_ctrl_c_routed = False


def route_ctrl_c_to_main_greenlet() -> bool:
    """Make Ctrl-C raise KeyboardInterrupt in the main greenlet. Returns whether the handler is in place.

    Python raises it in whatever code runs when SIGINT arrives: often a user greenlet, e.g. between Locust's
    stats listener and the sink's (Locust counts a request the sink never sees) or mid-request (a traceback
    per Ctrl-C). This handler forwards it to the main greenlet, where Locust waits for it
    (`main_greenlet.join()`, then its shutdown) and where the sink's final flush runs (a second Ctrl-C ends
    that wait and spools). If the event loop does not run for two Ctrl-Cs in a row (a greenlet that never
    yields), the third one interrupts wherever it lands, as Python would. Only installed when nobody else has a
    SIGINT handler (Locust's --processes parent has one), and only from the main thread.
    """
    global _ctrl_c_routed
    if _ctrl_c_routed:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False
    hub = gevent.get_hub()
    main = hub.parent  # the greenlet that created the hub: where gevent itself sends KeyboardInterrupt
    pending: list[Any] = []  # one loop callback per Ctrl-C not yet delivered

    def deliver() -> None:  # runs in the hub, between greenlets
        pending.pop(0)
        if not main.dead:
            main.throw(KeyboardInterrupt)

    def on_sigint(_signum: int, _frame: Any) -> None:
        if getcurrent() is main:
            raise KeyboardInterrupt
        if len(pending) >= 2:  # the loop has not run since two Ctrl-Cs: interrupt here instead, once
            for callback in pending:
                callback.stop()
            pending.clear()
            raise KeyboardInterrupt
        pending.append(hub.loop.run_callback(deliver))

    signal.signal(signal.SIGINT, on_sigint)
    _ctrl_c_routed = True
    return True
