#!/usr/bin/env python3
"""Turns bench result lines (see bench/lib.sh) into BENCHMARKS.md: per benchmark, median/min/max of
every variant measured in the same run, the ratios, and each target as met or MISSED."""
import datetime, os, platform, statistics, sys
from collections import OrderedDict

results, out = sys.argv[1], sys.argv[2]
measures = OrderedDict()   # bench -> variant -> (unit, [values])
targets, notes, meta = [], OrderedDict(), {}
for line in open(results):
    f = line.rstrip("\n").split("\t")
    if f[0] == "measure":
        bench, variant, value, unit = f[1], f[2], f[3], f[4]
        measures.setdefault(bench, OrderedDict()).setdefault(variant, (unit, []))[1].append(float(value))
    elif f[0] == "target":
        targets.append(f[1:7])
    elif f[0] == "meta":
        meta[f[1]] = f[2]
    elif f[0] == "note":
        notes.setdefault(f[1], []).append(f[2])

def med(bench, variant):
    return statistics.median(measures[bench][variant][1])

def fmt(v):
    return f"{v:,.3f}" if v < 10 else f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"

def judge(t):
    bench, variant, base, op, want, kind = t
    want = float(want)
    if bench not in measures or variant not in measures[bench] or (base != "-" and base not in measures[bench]):
        return None, want
    if kind == "speedup":
        got = med(bench, base) / med(bench, variant)
    elif kind == "rate":
        got = med(bench, variant) / med(bench, base)
    else:
        got = med(bench, variant)
    ok = got >= want if op == "ge" else got <= want
    return (got, ok), want

def machine():
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    ver = meta.get("server", "?")
    return f"{os.cpu_count()} cores, {mem / 1024 / 1024:.0f} GiB memory, PostgreSQL {ver}, {platform.machine()}"

lines = ["# Benchmarks", "",
         f"Written by `make bench` on {datetime.date.today().isoformat()}: {machine()}.",
         "Every row of a table was measured in the same run, on the same data; values are the median, "
         "minimum and maximum over the runs. Ratios compare medians.", ""]
if "elapsed" in meta:
    secs = int(meta["elapsed"])
    lines[-1:-1] = [f"The whole run, the release build included, took {secs // 60} min {secs % 60} s."]
if os.environ.get("QUICK") == "1":
    lines += ["**QUICK=1 smoke run: tiny sizes, one run. These figures mean nothing.**", ""]
for bench, variants in measures.items():
    lines += [f"## {bench}", "", "| variant | runs | median | min | max | unit |", "|---|---|---|---|---|---|"]
    for variant, (unit, vals) in variants.items():
        lines.append(f"| {variant} | {len(vals)} | {fmt(statistics.median(vals))} | {fmt(min(vals))} | "
                     f"{fmt(max(vals))} | {unit} |")
    bench_targets = [t for t in targets if t[0] == bench]
    if bench_targets:
        lines += ["", "| target | measured | wanted | verdict |", "|---|---|---|---|"]
        for t in bench_targets:
            res, want = judge(t)
            _, variant, base, op, _, kind = t
            what = {"speedup": f"{base} time / {variant} time", "rate": f"{variant} / {base}",
                    "abs": f"{variant}"}[kind]
            sign = ">=" if op == "ge" else "<="
            if res is None:
                lines.append(f"| {what} | not measured | {sign} {want:g} | MISSED (not measured) |")
            else:
                got, ok = res
                lines.append(f"| {what} | {fmt(got)} | {sign} {want:g} | {'met' if ok else 'MISSED'} |")
    for n in notes.get(bench, []):
        lines += ["", n]
    lines.append("")
for bench, ns in notes.items():
    if bench not in measures:
        lines += [f"## {bench}", ""] + ns + [""]
open(out, "w").write("\n".join(lines))
