"""interrupts.py: where Ctrl-C lands."""

from __future__ import annotations

import signal
import subprocess
import sys

CTRL_C_SCRIPT = r"""
import os, signal, sys, time
import gevent
from locust_sink.interrupts import route_ctrl_c_to_main_greenlet

assert route_ctrl_c_to_main_greenlet() and route_ctrl_c_to_main_greenlet()  # idempotent
caught = []

def worker(kills, yield_between):
    try:
        for _ in range(kills):
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler here, in this greenlet
            for _ in range(1000):
                pass
            if yield_between:
                gevent.sleep(0)
        caught.append("worker finished")
        gevent.sleep(5)
    except KeyboardInterrupt:
        caught.append("worker interrupted")

for kills, yield_between in ((1, True), (3, False)):
    caught.clear()
    g = gevent.spawn(worker, kills, yield_between)
    try:
        gevent.sleep(5)
        caught.append("main slept")
    except KeyboardInterrupt:
        caught.append("main interrupted")
    g.kill()
    print(kills, ",".join(sorted(caught)))
"""


def test_ctrl_c_is_routed_to_the_main_greenlet(tmp_path):
    """A Ctrl-C that arrives while a user greenlet runs reaches the main greenlet (where Locust waits for it)
    and not that greenlet; three Ctrl-Cs without the loop running in between interrupt where they land."""
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # one Ctrl-C: the worker carries on, the main greenlet gets the interrupt
    assert lines[0] == "1 main interrupted,worker finished", out
    # three Ctrl-Cs, the worker never yields: the third interrupts the worker, the main greenlet sleeps on
    assert lines[1] == "3 main slept,worker interrupted", out
    assert "Traceback" not in out.stderr, out.stderr  # no interrupt left over for later
