"""A release `carteiro` started for a benchmark script: its own data
directory, loopback port 0, and the startup line that says where it
listens. Shared by scripts/bench-durable and scripts/kafka-ack-latency.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

STARTUP_SECONDS_MAX = 30


def start(build, data_root, prefix, listeners, startup_line, preexec_fn=None):
    """Starts BUILD/carteiro with `listeners` (the --kafka-listen and
    --http-listen flags) and a new data directory under `data_root`; waits
    (at most STARTUP_SECONDS_MAX) for its startup line to match the regular
    expression `startup_line`. Returns the process, the directory (holding
    broker.out and d/) and the match's groups; exits the script if the
    broker does not start."""
    data = tempfile.mkdtemp(prefix=prefix, dir=data_root)
    out = open(os.path.join(data, "broker.out"), "w+")
    broker = subprocess.Popen(
        [os.path.join(build, "carteiro"), "--listen", "127.0.0.1:0", *listeners,
         "--data-dir", os.path.join(data, "d")],
        stdout=out, stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
    deadline = time.monotonic() + STARTUP_SECONDS_MAX
    while time.monotonic() < deadline:
        out.seek(0)
        found = re.search(startup_line, out.read())
        if found:
            return broker, data, found.groups()
        if broker.poll() is not None:
            break
        time.sleep(0.05)
    broker.kill()
    sys.exit(f"{build}/carteiro did not start; see {out.name}")
