"""What the client check scripts share: bounded runs, checks, steps that
report a failure and let the independent steps after them run, and the
final verdict line the Rust tests print.
"""

import os
import signal
import sys
import time
import traceback

# The whole script's bound: the Rust test has its own, this one fails first
# with a clearer message.
SCRIPT_TIMEOUT_S = int(os.environ.get("CARTEIRO_SCRIPT_TIMEOUT_S", "60"))
# Bound of one wait for the broker or the clients.
WAIT_S = 20.0

_checks = 0
_failures = []
_started = time.monotonic()


class CheckFailed(Exception):
    pass


def check(condition, message):
    global _checks
    if not condition:
        raise CheckFailed(message)
    _checks += 1


def ok(message):
    print(f"ok: {message}", flush=True)


def step(name, body, *args):
    """Runs one step; a failure is reported and the independent steps after it still run."""
    try:
        body(*args)
    except CheckFailed as e:
        _failures.append(name)
        print(f"FAIL: {name}: {e}", flush=True)
    except Exception as e:  # a client exception is the step's failure too
        _failures.append(name)
        print(f"FAIL: {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()


def bound(what):
    """Ends the process (exit 2) if it runs past SCRIPT_TIMEOUT_S."""

    def overrun(signum, frame):
        print(f"FAIL: {what} overran its {SCRIPT_TIMEOUT_S} s bound", flush=True)
        os._exit(2)

    signal.signal(signal.SIGALRM, overrun)
    signal.alarm(SCRIPT_TIMEOUT_S)


def finish(what):
    """Prints the verdict and exits non-zero if any step failed."""
    elapsed = time.monotonic() - _started
    if _failures:
        print(f"FAILED: {what}: {_failures} failed ({_checks} checks passed) in {elapsed:.1f} s", flush=True)
        sys.exit(1)
    print(f"PASS: {what}: {_checks} checks in {elapsed:.1f} s", flush=True)
