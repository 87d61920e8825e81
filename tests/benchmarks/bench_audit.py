"""Benchmark: `kijun audit` against its peer, `ansible-playbook --check --diff`, on the lab.

    .venv/bin/python tests/benchmarks/bench_audit.py [--runs 5] [--scale 50]

Targets (issue "kijun audit"): a full audit of one lab host at most 1 s wall and at least 20
times faster than `ansible-playbook playbooks/site.yml --check --diff` on the same host; all lab
hosts at most 2 times the one-host time; with --scale N, a lab of N hosts at most 3 times the
one-host time. Both commands are measured in the same run, warm (persistent SSH connections
open, as in a scheduled audit); the median of the runs is reported. Not a test: it is slow and
its figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
ENV = {
    **os.environ,
    "CONTAINERS_CONF": str(ROOT / ".kijun" / "containers.conf"),
    "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
}


def timed(cmd: list[str], runs: int, ok: tuple[int, ...] = (0, 1)) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - started)
        if proc.returncode not in ok:
            tail = proc.stdout[-2000:] + proc.stderr[-2000:]
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
    return times


LOAD = os.getloadavg()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--host", default="lg-app01")
    parser.add_argument("--scale", type=int, default=0, help="also audit a lab of N hosts")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="kijun-bench-"))
    kijun = [str(BIN / "kijun"), "audit", "--out", str(out)]
    rows: list[tuple[str, float]] = []

    subprocess.run(
        [str(BIN / "kijun"), "lab", "up"], cwd=ROOT, env=ENV, check=True, stdin=subprocess.DEVNULL
    )
    timed([*kijun, "--limit", args.host], 1)  # warm: connections, caches
    one = statistics.median(timed([*kijun, "--limit", args.host], args.runs))
    rows.append((f"kijun audit --limit {args.host}", one))
    check = [str(BIN / "ansible-playbook"), "playbooks/site.yml", "--check", "--diff",
             "--limit", args.host]  # fmt: skip
    peer = statistics.median(timed(check, max(1, args.runs // 2), ok=(0, 2)))
    rows.append((f"ansible-playbook playbooks/site.yml --check --diff --limit {args.host}", peer))
    timed(kijun, 1)
    every = statistics.median(timed(kijun, args.runs))
    status = subprocess.run([str(BIN / "kijun"), "lab", "status", "--json"], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, check=False,
                            stdin=subprocess.DEVNULL)  # fmt: skip
    hosts = status.stdout.count('"host"')
    rows.append((f"kijun audit (all {hosts} lab hosts)", every))
    scaled = None
    print(f"one host {one:.2f} s, check mode {peer:.2f} s, all {hosts} hosts {every:.2f} s",
          flush=True)  # fmt: skip
    if args.scale:
        extra = args.scale - hosts
        try:
            subprocess.run([str(BIN / "kijun"), "lab", "up", "--extra-hosts", str(extra)],
                           cwd=ROOT, env=ENV, check=True, stdin=subprocess.DEVNULL)  # fmt: skip
            # The baseline on the new hosts only (the others have it already).
            subprocess.run([str(BIN / "ansible-playbook"), "playbooks/site.yml", "--limit",
                            "lg-bench*"], cwd=ROOT, env=ENV, check=True,
                           capture_output=True, stdin=subprocess.DEVNULL)  # fmt: skip
            timed(kijun, 1)
            scaled = statistics.median(timed(kijun, max(1, args.runs // 2)))
            rows.append((f"kijun audit ({args.scale} lab hosts)", scaled))
        except subprocess.CalledProcessError as exc:
            print(f"the scaling run failed: {exc}", file=sys.stderr)
        finally:  # back to the built-in lab
            subprocess.run(
                [str(BIN / "kijun"), "lab", "up"],
                cwd=ROOT,
                env=ENV,
                check=True,
                stdin=subprocess.DEVNULL,
            )

    print("| command | median wall (s) |\n| --- | --- |")
    for name, value in rows:
        print(f"| `{name}` | {value:.2f} |")
    print()
    print(f"one host: {one:.2f} s (target <= 1 s): {'met' if one <= 1 else 'NOT met'}")
    print(f"vs ansible-playbook --check: {peer / one:.1f}x faster (target >= 20x): "
          f"{'met' if peer / one >= 20 else 'NOT met'}")  # fmt: skip
    print(f"all {hosts} hosts / one host: {every / one:.2f} (target <= 2): "
          f"{'met' if every / one <= 2 else 'NOT met'}")  # fmt: skip
    if scaled is not None:
        print(f"{args.scale} hosts / one host: {scaled / one:.2f} (target <= 3): "
              f"{'met' if scaled / one <= 3 else 'NOT met'}; "
              f"{scaled / args.scale * 1000:.0f} ms per host on average, "
              f"{(scaled - one) / (args.scale - 1) * 1000:.0f} ms for each host beyond the "
              "first")  # fmt: skip
    print(f"all {hosts} hosts: {(every - one) / max(1, hosts - 1) * 1000:.0f} ms for each host "
          "beyond the first")  # fmt: skip
    print(f"machine: {os.cpu_count()} CPUs; load average before the run "
          f"{' '.join(f'{x:.2f}' for x in LOAD)}")  # fmt: skip


if __name__ == "__main__":
    main()
