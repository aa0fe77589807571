"""The CPU accounting of bench/tenants_per_worker.py: a task process that exits during a round is counted, once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from bench.tenants_per_worker import machine_share, tree_cpu_seconds

BURN_SECONDS = 0.5
TICKS_SLACK = 0.05

# A stand-in for the scheduler: on "go" it runs a child that burns CPU and exits (reaped, as a supervisor waits
# for its task process), then says "done" and idles until its stdin closes.
PARENT = textwrap.dedent(
    f"""
    import subprocess, sys, time
    burn = "import time\\nwhile time.process_time() < {BURN_SECONDS}: pass"
    print("ready", flush=True)
    sys.stdin.readline()
    subprocess.run([sys.executable, "-c", burn], check=True)
    print("done", flush=True)
    sys.stdin.read()
    """
)


def test_an_exited_child_s_cpu_is_counted_once_through_its_parent():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        before = tree_cpu_seconds(parent.pid)
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "done"
        after = tree_cpu_seconds(parent.pid)
    finally:
        parent.stdin.close()
        parent.wait(timeout=30)
    # the child's burn, to the kernel's clock ticks (10 ms, rounded down per process); twice the burn would mean
    # it was counted twice, none that the exited child was lost
    assert BURN_SECONDS - TICKS_SLACK <= after - before < 2 * BURN_SECONDS


def test_a_process_that_is_gone_has_no_cpu_left_to_count():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert tree_cpu_seconds(gone.pid) == 0.0


def test_500_tenants_at_3_6_cpu_seconds_a_run_take_half_of_two_cores_every_30_minutes():
    assert machine_share(3.6) == 50.0
