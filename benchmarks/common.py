"""Shared by the benchmarks: the server they run on, the machine they ran on, medians with min and max."""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runbook_lib.db import connection as database  # noqa: E402  (needs ROOT on sys.path, added just above)
from runbook_lib.db import embedded  # noqa: E402  (likewise)

RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_STATE = Path(os.environ.get("TMPDIR", "/tmp")) / f"runbook-bench-{os.getuid()}"


def server_url(explicit: str | None, state: Path) -> str:
    """The server's maintenance URL: --server-url, else the embedded PostgreSQL under `state` (never the demo's)."""
    if explicit:
        database.connect(explicit).close()
        return explicit
    return embedded.start(state).url


def psql_binary() -> str:
    found = shutil.which("psql") or "/usr/bin/psql"
    if not Path(found).exists():
        raise SystemExit("psql is not installed (apt-get install postgresql-client); the baseline needs it.")
    return found


def header(benchmark: str, argv: list[str] | None, server: str) -> dict:
    """What every results file starts with: which benchmark, the command as run, when it started, where."""
    return {
        "benchmark": benchmark,
        "command": f"python benchmarks/{benchmark}.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(server),
    }


def machine(url: str | None = None) -> dict:
    """What the numbers were measured on."""
    info = {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _mem_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        out = subprocess.run([psql_binary(), "--version"], capture_output=True, text=True, check=True).stdout
        info["psql"] = out.strip()
    except (OSError, subprocess.CalledProcessError, SystemExit):
        info["psql"] = "not installed"
    if url:
        with database.connect(url) as conn:
            info["server"] = conn.execute("SELECT version()").fetchone()[0]
            info["server_settings"] = {
                name: conn.execute(f"SHOW {name}").fetchone()[0]
                for name in (
                    "shared_buffers",
                    "work_mem",
                    "maintenance_work_mem",
                    "max_wal_size",
                    "fsync",
                    "synchronous_commit",
                    "deadlock_timeout",
                )
            }
            row = conn.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'").fetchone()
            if row and (storage := data_storage(row[0])):  # no row for a role that may not read it
                info["data_directory"] = storage
    return info


def data_storage(directory: str) -> dict | None:
    """Which filesystem holds the server's data (a local server only): a data directory on tmpfs commits
    without touching a disk, and its stalls are then none of the disk's."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    path = os.path.realpath(directory)
    under = [(point, fs) for point, fs in mounts if path == point or path.startswith(point.rstrip("/") + "/")]
    if not under or not os.path.isdir(path):
        return None  # a server elsewhere: its directory is not this machine's
    point, fs = max(under, key=lambda m: len(m[0]))
    return {"path": path, "filesystem": fs, "mount_point": point}


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else platform.processor()


def _mem_gib() -> float:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^MemTotal:\s*(\d+) kB", text, re.M)
    return round(int(match.group(1)) / 1024 / 1024, 1) if match else 0.0


def spread(values: list[float]) -> dict:
    """Median with min and max (None values, e.g. n/a, are left out)."""
    vals = [v for v in values if v is not None and v == v]  # None (n/a) and NaN (nothing measured) left out
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def parse_size(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    factor = 1
    if text.endswith("k"):
        factor, text = 1_000, text[:-1]
    elif text.endswith("m"):
        factor, text = 1_000_000, text[:-1]
    value = float(text) * factor
    if value < 1 or value != int(value):
        raise ValueError(f"not a size: {text!r}")
    return int(value)


def size_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def disk_commit_latency(directory: Path, seconds: float, interval_s: float = 0.005) -> dict:
    """What this disk alone gives a committing application: an 8 KiB append and fdatasync every `interval_s`
    (a small transaction's WAL record and its flush), with no PostgreSQL work. The floor under any "longest
    stall" of an application that commits: on a shared virtual disk an fsync now and then takes tens of ms."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"disk-probe-{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    latencies: list[float] = []
    try:
        page, end = b"\0" * 8192, time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.monotonic()
            os.write(fd, page)
            os.fdatasync(fd)
            latencies.append(time.monotonic() - began)
            if len(latencies) % 4096 == 0:  # a WAL segment's worth: start over, as PostgreSQL recycles segments
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
            time.sleep(interval_s)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    from workload import percentile  # benchmarks/ is on sys.path, as for every benchmark script

    latencies.sort()
    return {
        "syncs": len(latencies),
        "max_ms": round(latencies[-1] * 1000, 3) if latencies else None,
        "p999_ms": round(percentile(latencies, 99.9) * 1000, 3) if latencies else None,
        "over_20ms": sum(1 for x in latencies if x > 0.020),
    }
