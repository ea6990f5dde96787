"""The runtime benchmark's figures: medians over rounds, paired ratios, the table.

Split from bench.py, which runs the servers and the load; this only computes
and prints.
"""

from __future__ import annotations

import statistics
from typing import Any


def aggregate(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median of each figure over the rounds, per case, server and concurrency."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in raw:
        groups.setdefault((row["case"], row["server"], row["concurrency"]), []).append(row)
    results = []
    for (case, server, conc), rows in groups.items():
        merged: dict[str, Any] = {"case": case, "server": server, "concurrency": conc}
        for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "cpu_us_per_req"):
            merged[key] = round(statistics.median(row[key] for row in rows), 3)
        merged["requests"] = sum(row["requests"] for row in rows)
        merged["errors"] = sum(row["errors"] for row in rows)
        merged["wrk_command"] = rows[0]["wrk_command"]
        results.append(merged)
    return results


def ratios(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """modelform against the others, paired within each round (measured back to back),
    then the median over the rounds: the machine's drifting load cancels out best."""
    index = {(r["case"], r["server"], r["concurrency"], r["round"]): r for r in raw}
    cells: dict[tuple[str, int], dict[str, list[float]]] = {}
    for (case, server, conc, round_), mf in index.items():
        if server != "modelform":
            continue
        cell = cells.setdefault((case, conc), {})
        for other, prefix in (("azmlinfsrv", "azmlinfsrv"), ("bare", "bare")):
            them = index.get((case, other, conc, round_))
            if them is None:
                continue
            cell.setdefault(f"rps_vs_{prefix}", []).append(mf["rps"] / them["rps"])
            cell.setdefault(f"p99_vs_{prefix}", []).append(mf["p99_ms"] / them["p99_ms"])
            cell.setdefault(f"cpu_vs_{prefix}", []).append(
                mf["cpu_us_per_req"] / max(them["cpu_us_per_req"], 1e-9)
            )
    medians = {(r["case"], r["server"], r["concurrency"]): r for r in aggregate(raw)}
    rows = []
    for (case, conc), values in cells.items():
        row: dict[str, Any] = {"case": case, "concurrency": conc}
        for key, series in values.items():
            row[key] = round(statistics.median(series), 2)
        # The other estimator: ratio of the medians (each over its own rounds).
        mf = medians[(case, "modelform", conc)]
        for other in ("azmlinfsrv", "bare"):
            them = medians.get((case, other, conc))
            if them:
                row[f"rps_vs_{other}_of_medians"] = round(mf["rps"] / them["rps"], 2)
        rows.append(row)
    return rows


def print_report(results: list[dict[str, Any]], ratio_rows: list[dict[str, Any]]) -> None:
    """Markdown tables (medians over the rounds), then the acceptance verdicts."""
    print("| case | server | conc | req/s | p50 ms | p99 ms | CPU us/req | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['case']} | {r['server']} | {r['concurrency']} | {r['rps']:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_us_per_req']:.0f} | {r['errors']} |"
        )
    print()
    print(
        "| case | conc | req/s vs azmlinfsrv | p99 vs azmlinfsrv | req/s vs bare "
        "| p99 vs bare | CPU/req vs bare |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in ratio_rows:
        cells = [row.get(key, "-") for key in _RATIO_KEYS]
        print(f"| {row['case']} | {row['concurrency']} | " + " | ".join(map(str, cells)) + " |")
    print()
    print("| case | conc | req/s vs azmlinfsrv (of medians) | req/s vs bare (of medians) |")
    print("|---|---:|---:|---:|")
    for row in ratio_rows:
        cells = [row.get(key, "-") for key in _RATIO_KEYS_MEDIANS]
        print(f"| {row['case']} | {row['concurrency']} | " + " | ".join(map(str, cells)) + " |")
    print()
    for row in ratio_rows:
        if row["concurrency"] != 8 or any(key not in row for key in _RATIO_KEYS[:3]):
            continue
        ok = (
            row["rps_vs_azmlinfsrv"] >= 2
            and row["p99_vs_azmlinfsrv"] <= 1
            and row["rps_vs_bare"] >= 0.7
        )
        verdict = "PASS" if ok else "FAIL"
        print(
            f"acceptance {row['case']} c=8 (req/s >= 2x azmlinfsrv, p99 no worse, "
            f">= 0.7 of bare): {verdict}"
        )


_RATIO_KEYS_MEDIANS = ("rps_vs_azmlinfsrv_of_medians", "rps_vs_bare_of_medians")
_RATIO_KEYS = (
    "rps_vs_azmlinfsrv",
    "p99_vs_azmlinfsrv",
    "rps_vs_bare",
    "p99_vs_bare",
    "cpu_vs_bare",
)
