#!/usr/bin/python3
"""Tables and plots for docs/performance.md from one measurement run.

    /usr/bin/python3 bench/perf_report.py RESULTS_DIR [--figures docs/figures] > tables.md

RESULTS_DIR holds the google-benchmark JSON files of one run (see docs/performance.md for the
commands): host.json, host_no_math_errno.json, comm.json, mpi_np<M>.json, and compare.json from
bench/compare_pytorch.py. Prints Markdown tables (medians of the repetitions) and writes
perf_bandwidth_vs_n.svg and perf_all_reduce_vs_m.svg (plain SVG: no plotting library needed).
"""

import argparse
import glob
import json
import math
import os
import re

SCALE = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def load(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError:
        print(f"<!-- {path}: incomplete JSON, skipped -->")
        return None


def medians(report):
    """{run_name: benchmark entry of the median (or the single run)}."""
    out = {}
    if not report:
        return out
    for b in report["benchmarks"]:
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                out[b["run_name"]] = b
        elif b["run_name"] not in out:
            out[b["run_name"]] = b
    return out


def seconds(b):
    return b["real_time"] * SCALE[b["time_unit"]]


def fmt_n(n):
    return f"2^{int(math.log2(n))}"


def host_tables(host, nme, triad):
    rows = []
    ops = ["sgd", "adamw", "dot", "squared_norm", "axpy", "dppf_distance_pass", "dppf_update_pass",
           "sync_local/pull_push", "sync_local/local_sgd", "sync_local/leader", "sync_local/elastic",
           "sync_local/grawa", "sync_local/diloco", "philox_fill_uniform", "philox_fill_normal",
           "philox_fill_rademacher"]
    pat = re.compile(r"^(.*)/(host|host_parallel)/(\d+)/real_time$")
    data = {}
    for name, b in host.items():
        m = pat.match(name)
        if m:
            data[(m.group(1), m.group(2), int(m.group(3)))] = b
    sizes = sorted({k[2] for k in data})
    lines = ["| operation | executor | " + " | ".join(fmt_n(n) for n in sizes) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in sizes) + " |"]
    for op in ops:
        for ex in ("host", "host_parallel"):
            cells = []
            for n in sizes:
                b = data.get((op, ex, n))
                cells.append(f"{b['bytes_per_second'] / 1e9:.1f} ({b['fraction_of_limit']:.2f})" if b else "-")
            if any(c != "-" for c in cells):
                lines.append(f"| {op} | {ex} | " + " | ".join(cells) + " |")
    if nme:
        for ex in ("host", "host_parallel"):
            cells = []
            for n in sizes:
                b = nme.get(f"adamw/{ex}/{n}/real_time")
                cells.append(f"{b['bytes_per_second'] / 1e9:.1f} ({b['fraction_of_limit']:.2f})" if b else "-")
            lines.append(f"| adamw, -fno-math-errno | {ex} | " + " | ".join(cells) + " |")
    return "\n".join(lines), data, sizes


def time_table(data, sizes):
    lines = ["| operation | executor | " + " | ".join(fmt_n(n) for n in sizes) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in sizes) + " |"]
    for op in ("sgd", "adamw", "sync_local/pull_push"):
        for ex in ("host", "host_parallel"):
            cells = []
            for n in sizes:
                b = data.get((op, ex, n))
                cells.append(f"{seconds(b) * 1e3:.3f}" if b else "-")
            lines.append(f"| {op} | {ex} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def all_reduce_tables(comm, mpis):
    pat = re.compile(r"^all_reduce/threads/N:(\d+)/M:(\d+)/real_time$")
    if not comm and not mpis:
        return "", {}, {}, [], []
    threads = {}
    for name, b in comm.items():
        m = pat.match(name)
        if m:
            threads[(int(m.group(1)), int(m.group(2)))] = b
    mpi = {}
    for np_, rep in mpis.items():
        for name, b in rep.items():
            m = re.match(r"^all_reduce/mpi/N:(\d+)/", name)
            if m:
                mpi[(int(m.group(1)), np_)] = b
    sizes = sorted({k[0] for k in threads} | {k[0] for k in mpi})
    ms = sorted({k[1] for k in threads} | {k[1] for k in mpi})
    lines = ["| N | " + " | ".join(f"threads M={m}" for m in ms) + " | " + " | ".join(f"mpi M={m}" for m in ms) + " |",
             "| ---: | " + " | ".join("---:" for _ in ms * 2) + " |"]
    for n in sizes:
        cells = []
        for src in (threads, mpi):
            for m in ms:
                b = src.get((n, m))
                cells.append(f"{seconds(b) * 1e3:.2f} ms, {b['bytes_per_second'] / 1e9:.2f} / {b['bus_bandwidth'] / 1e9:.2f}"
                             if b else "-")
        lines.append(f"| {fmt_n(n)} | " + " | ".join(cells) + " |")
    return "\n".join(lines), threads, mpi, sizes, ms


def training_table(comm):
    pat = re.compile(r"^training_step/([a-z_]+)/N:(\d+)/tau:(\d+)/real_time$")
    rows = {}
    for name, b in comm.items():
        m = pat.match(name)
        if m:
            rows[(m.group(1), int(m.group(3)))] = (int(m.group(2)), b)
    if not rows:
        return ""
    taus = sorted({k[1] for k in rows})
    rules = ["data_parallel", "pull_push", "local_sgd", "elastic", "leader", "grawa", "diloco"]
    n = next(iter(rows.values()))[0]
    dp = rows.get(("data_parallel", taus[0]))
    lines = [f"N = {fmt_n(n)} fp32 parameters, M = 2 threads, SGD momentum 0.9. Cells: bytes sent per step per rank "
             f"(payload, scalars included) / ratio to data parallel / step time.", "",
             "| rule | " + " | ".join(f"tau={t}" for t in taus) + " |",
             "| --- | " + " | ".join("---:" for _ in taus) + " |"]
    for rule in rules:
        cells = []
        for t in taus:
            if (rule, t) not in rows:
                cells.append("-")
                continue
            b = rows[(rule, t)][1]
            bytes_ = b["comm_bytes_per_step"]
            ratio = bytes_ / dp[1]["comm_bytes_per_step"] if dp else float("nan")
            cells.append(f"{bytes_:,.0f} B / {ratio:.3f} / {seconds(b) * 1e3:.2f} ms")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_table(compare):
    if not compare:
        return ""
    lines = ["| op | N | executor | dppf ms | dppf GB/s | PyTorch ms | PyTorch GB/s | speedup |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    ar = ["| N | gloo ms | dppf threads ms | speedup | dppf mpi ms | speedup |",
          "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in compare["rows"]:
        if r["op"] in ("sgd", "adamw"):
            lines.append(f"| {r['op']} | {fmt_n(r['n'])} | {r['executor']} | {r['dppf_s'] * 1e3:.3f} | "
                         f"{r['dppf_Bps'] / 1e9:.2f} | {r['torch_s'] * 1e3:.3f} | {r['torch_Bps'] / 1e9:.2f} | "
                         f"{r['speedup']:.2f} |")
        else:
            t, m, g = r["threads_s"], r["mpi_s"], r["gloo_s"]
            ar.append(f"| {fmt_n(r['n'])} | {g * 1e3:.3f} | " + (f"{t * 1e3:.3f} | {g / t:.2f}" if t else "- | -") +
                      " | " + (f"{m * 1e3:.3f} | {g / m:.2f}" if m else "- | -") + " |")
    return "\n".join(lines) + "\n\nAll-reduce, " + str(compare["ranks"]) + " workers:\n\n" + "\n".join(ar)


# ---- a small SVG line plot ----------------------------------------------------------------
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]


def svg_plot(path, title, xlabel, ylabel, series, xticks, log_y=False, hline=None):
    """series: [(label, [(x, y), ...], dashed)]; x already on a linear plot scale."""
    w, h, left, right, top, bottom = 860, 430, 70, 250, 40, 50
    xs = [x for _, pts, _ in series for x, _ in pts] + [t[0] for t in xticks]
    ys = [y for _, pts, _ in series for _, y in pts if y > 0] + ([hline[1]] if hline else [])
    x0, x1 = min(xs), max(xs)
    if log_y:
        y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
        ty = lambda y: (math.log10(y) - y0) / max(y1 - y0, 1e-9)
        yticks = [(10 ** e, f"{10 ** e:g}") for e in range(y0, y1 + 1)]
    else:
        y0, y1 = 0.0, max(ys) * 1.1
        ty = lambda y: (y - y0) / (y1 - y0)
        step = 10 ** math.floor(math.log10(y1 / 4)) if y1 > 0 else 1
        step *= 2 if y1 / step > 10 else 1
        yticks = [(v * step, f"{v * step:g}") for v in range(0, int(y1 / step) + 1)]
    px = lambda x: left + (x - x0) / max(x1 - x0, 1e-9) * (w - left - right)
    py = lambda y: h - bottom - ty(y) * (h - top - bottom)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2 - right / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
           f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">{xlabel}</text>',
           f'<text x="16" y="{(top + h - bottom) / 2}" text-anchor="middle" transform="rotate(-90 16 {(top + h - bottom) / 2})">{ylabel}</text>']
    for x, label in xticks:
        out.append(f'<line x1="{px(x):.1f}" y1="{h - bottom}" x2="{px(x):.1f}" y2="{h - bottom + 5}" stroke="black"/>')
        out.append(f'<text x="{px(x):.1f}" y="{h - bottom + 18}" text-anchor="middle">{label}</text>')
    for y, label in yticks:
        out.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{w - right}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{label}</text>')
    if hline:
        label, y = hline
        out.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{w - right}" y2="{py(y):.1f}" stroke="black" stroke-dasharray="2,3"/>')
        out.append(f'<text x="{w - right - 4}" y="{py(y) - 5:.1f}" text-anchor="end">{label}</text>')
    for k, (label, pts, dashed) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        pts = [(x, y) for x, y in pts if y > 0]
        d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        dash = ' stroke-dasharray="6,4"' if dashed else ""
        out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}"/>')
        ly = top + 10 + 18 * k
        out.append(f'<line x1="{w - right + 12}" y1="{ly}" x2="{w - right + 36}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{w - right + 42}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("--figures", default="docs/figures")
    args = ap.parse_args()
    r = args.results
    host_rep = load(os.path.join(r, "host.json"))
    host = medians(host_rep)
    # Later partial runs (extra operations, re-measured groups) extend or replace entries.
    for extra in sorted(glob.glob(os.path.join(r, "host_*.json"))):
        if "no_math_errno" not in extra:
            host.update(medians(load(extra)))
    nme = medians(load(os.path.join(r, "host_no_math_errno.json")))
    comm = medians(load(os.path.join(r, "comm.json")))
    for extra in sorted(glob.glob(os.path.join(r, "comm_*.json"))):
        comm.update(medians(load(extra)))
    mpis = {}
    for p in glob.glob(os.path.join(r, "mpi_np*.json")):
        mpis[int(re.search(r"np(\d+)", p).group(1))] = medians(load(p))
    compares = [load(p) for p in sorted(glob.glob(os.path.join(r, "compare*.json")))]
    ctx = host_rep["context"]
    triad = float(ctx["triad_bytes_per_second"])

    print(f"Triad: {ctx.get('triad')}; one thread: {ctx.get('triad_1_thread')}\n")
    table, data, sizes = host_tables(host, nme, triad)
    print("### Bandwidth: GB/s (fraction of triad)\n\n" + table + "\n")
    print("### Time per call (ms)\n\n" + time_table(data, sizes) + "\n")
    ar, threads, mpi, ar_sizes, ms = all_reduce_tables(comm, mpis)
    print("### All-reduce (avg, fp32): time, algorithm / bus bandwidth GB/s\n\n" + ar + "\n")
    print("### Communication per training step\n\n" + training_table(comm) + "\n")
    for compare in compares:
        if compare:
            print(f"### dppf vs PyTorch 1.13, {compare['threads']} thread(s) on both sides (one run)\n\n"
                  + compare_table(compare) + "\n")

    os.makedirs(args.figures, exist_ok=True)
    xt = [(math.log2(n), fmt_n(n)) for n in sizes]
    series = []
    for op, ex, dashed in (("sgd", "host", False), ("sgd", "host_parallel", True), ("adamw", "host", False),
                           ("adamw", "host_parallel", True), ("sync_local/pull_push", "host", False),
                           ("sync_local/pull_push", "host_parallel", True), ("dot", "host", False)):
        pts = [(math.log2(n), data[(op, ex, n)]["bytes_per_second"] / 1e9) for n in sizes if (op, ex, n) in data]
        series.append((f"{op.replace('sync_local/', 'sync ')} {ex}", pts, dashed))
    if nme:
        pts = [(math.log2(n), nme[f"adamw/host/{n}/real_time"]["bytes_per_second"] / 1e9) for n in sizes
               if f"adamw/host/{n}/real_time" in nme]
        series.append(("adamw host -fno-math-errno", pts, False))
    svg_plot(os.path.join(args.figures, "perf_bandwidth_vs_n.svg"), "Host bandwidth vs N (model bytes / time)",
             "N (fp32 parameters)", "GB/s", series, xt, log_y=True, hline=(f"triad {triad / 1e9:.1f} GB/s", triad / 1e9))
    series = []
    for n in (1 << 20, 1 << 24):
        for name, src, dashed in (("threads", threads, False), ("mpi", mpi, True)):
            pts = [(m, seconds(src[(n, m)]) * 1e3) for m in ms if (n, m) in src]
            if pts:
                series.append((f"{name} N={fmt_n(n)}", pts, dashed))
    if series:
        svg_plot(os.path.join(args.figures, "perf_all_reduce_vs_m.svg"), "All-reduce (avg) time vs workers M",
                 "M (workers)", "ms", series, [(m, str(m)) for m in ms], log_y=True)


if __name__ == "__main__":
    main()
