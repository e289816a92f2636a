"""SVG plots of a benchmark run with gnuplot (Debian: gnuplot-nox):
ratios-<group>.svg   one bar per comparison row of a group, log-x, anchored at 1x
fault-latency.svg    per-fault latency distribution, one step line per mode, log-x
fault-latency-cdf.svg  the same as cumulative fractions
Data and gnuplot scripts are kept next to the plots (plots/*.dat, *.gp) so a
plot can be re-rendered or restyled by hand.
"""

import math
import os
import re
import shutil
import subprocess

from bench_summary import format_ratio


class PlotError(Exception):
    pass


def gnuplot_path():
    return shutil.which("gnuplot")


def _quote(text):
    """A gnuplot double-quoted string ("\\n" in text becomes a line break)."""
    text = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\n", "\\n") + '"'


def _safe(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _run(gp_file):
    gnuplot = gnuplot_path()
    if gnuplot is None:
        raise PlotError("gnuplot not found (install gnuplot-nox: .ci/install-deps)")
    proc = subprocess.run([gnuplot, gp_file], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PlotError(f"gnuplot {gp_file} failed: {proc.stderr.strip().splitlines()[-1:]}")


def ratio_rows(summary, group):
    """(label, ratio, target) of every row with a ratio in a comparison group."""
    rows = []
    for c in summary["comparisons"]:
        if c.get("group") != group:
            continue
        for r in c["results"]:
            if r.get("ratio") and r["ratio"] > 0:
                label = f"{c['name']} [{r.get('variant', r['subject'])}]" if len(c["results"]) > 1 else c["name"]
                rows.append((f"{label}  {format_ratio(r['ratio'])}", r["ratio"], c.get("target")))
    return rows


def log_tics(lo, hi):
    """1-2-5 tics over [lo, hi], only powers of ten when the range is wide."""
    steps = (1, 2, 5) if hi / lo <= 10**2.5 else (1,)
    tics = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        tics += [m * 10.0 ** e for m in steps if lo <= m * 10.0 ** e <= hi]
    return ", ".join(f'"{t:g}" {t:g}' for t in tics)


def plot_ratios(summary, group, out_dir, title_suffix):
    """ratios-<group>.svg; returns its file name, or None when the group has no ratios."""
    rows = ratio_rows(summary, group)
    if not rows:
        return None
    plot_dir = os.path.join(out_dir, "plots")
    os.makedirs(plot_dir, exist_ok=True)
    base = f"ratios-{_safe(group)}"
    dat = os.path.join(plot_dir, base + ".dat")
    with open(dat, "w", encoding="utf-8") as f:
        f.write("# y  bar_from  bar_to  ratio  target  label\n")
        for i, (label, ratio, target) in enumerate(rows):
            t = target if target is not None else "NaN"
            y = len(rows) - 1 - i  # the first comparison at the top
            f.write(f"{y}\t{min(1.0, ratio)}\t{max(1.0, ratio)}\t{ratio}\t{t}\t{_quote(label)}\n")
    targets = [t for _, _, t in rows if t is not None]
    lo = min([r for _, r, _ in rows] + targets + [1.0]) / 2.5
    hi = max([r for _, r, _ in rows] + targets + [1.0]) * 2.5
    height = 160 + 22 * len(rows)
    svg = os.path.join(out_dir, base + ".svg")
    gp = os.path.join(plot_dir, base + ".gp")
    target_plot = ""
    if targets:
        target_plot = ', \\\n     \'\' using 5:1 with points pt 7 ps 0.8 lc rgb "#c0392b" title "target (max ratio)"'
    with open(gp, "w", encoding="utf-8") as f:
        f.write(f"""set terminal svg size 1100,{height} dynamic noenhanced font "sans,11" background "white"
set output {_quote(svg)}
set title {_quote(f"{group}: ratio subject / baseline, same run (< 1: subject faster){title_suffix}")}
set logscale x 10
set xrange [{lo}:{hi}]
set xtics ({log_tics(lo, hi)})
set yrange [-0.7:{len(rows) - 0.3}]
set xlabel "ratio (log scale)"
set ytics nomirror font ",9"
set grid xtics
set key outside bottom center horizontal
set style fill solid 0.7 border -1
set arrow from 1,graph 0 to 1,graph 1 nohead dt 2 lc rgb "black"
plot {_quote(dat)} using (($2+$3)/2):1:2:3:($1-0.35):($1+0.35):ytic(6) \\
     with boxxyerror lc rgb "#4a7ab5" title "ratio"{target_plot}
""")
    _run(gp)
    return os.path.basename(svg)


def step_points(buckets, max_ns):
    """(lower, upper, count) of each bucket: the first starts one bucket width
    (in log) below its bound; the overflow bucket ends at max (or 2x its start)."""
    out = []
    finite = [le for le, _ in buckets if math.isfinite(le)]
    for i, (le, count) in enumerate(buckets):
        if i > 0:
            lower = buckets[i - 1][0]
        elif len(finite) > 1 and finite[0] > 0:
            lower = finite[0] * finite[0] / finite[1]
        else:
            lower = le / 2 if le > 0 else 0.5
        upper = le if math.isfinite(le) else (max_ns if max_ns and max_ns > lower else lower * 2)
        out.append((max(lower, 0.5), max(upper, 0.5), count))
    return out


def trimmed(steps):
    """Without the empty buckets before the first and after the last non-empty one."""
    nz = [i for i, (_, _, c) in enumerate(steps) if c > 0]
    if not nz:
        return []
    return steps[max(nz[0] - 1, 0): nz[-1] + 2]


def plot_latency(hists, out_dir, title_suffix):
    """fault-latency.svg and fault-latency-cdf.svg; returns their file names."""
    modes = [h for h in hists if h["count"] > 0]
    if not modes:
        return []
    plot_dir = os.path.join(out_dir, "plots")
    os.makedirs(plot_dir, exist_ok=True)
    series = []
    top = 0.0
    for h in modes:
        steps = trimmed(step_points(h["buckets"], h["max_ns"]))
        dat = os.path.join(plot_dir, f"latency-{_safe(h['mode'])}.dat")
        with open(dat, "w", encoding="utf-8") as f:
            cum = 0  # trimming removes only empty buckets
            f.write("# lower_ns upper_ns fraction cumulative_fraction\n")
            for lower, upper, count in steps:
                frac = count / h["count"]
                top = max(top, frac)
                f.write(f"{lower}\t{frac}\t{cum / h['count']}\n")
                cum += count
                f.write(f"{upper}\t{frac}\t{cum / h['count']}\n")
        p50 = f", p50 {h['p50_ns'] / 1e3:.3g} us" if h.get("p50_ns") else ""
        p99 = f", p99 {h['p99_ns'] / 1e3:.3g} us" if h.get("p99_ns") else ""
        series.append((dat, f"{h['mode']} (n={h['count']}{p50}{p99})"))
    produced = []
    for name, column, ylabel, title in (
            ("fault-latency", 2, "fraction of faults per bucket", "Per-fault latency distribution"),
            ("fault-latency-cdf", 3, "fraction of faults <= latency", "Per-fault latency, cumulative")):
        svg = os.path.join(out_dir, name + ".svg")
        gp = os.path.join(plot_dir, name + ".gp")
        plots = ", \\\n     ".join(f"{_quote(d)} using ($1/1000):{column} with lines lw 2 title {_quote(t)}"
                                   for d, t in series)
        with open(gp, "w", encoding="utf-8") as f:
            f.write(f"""set terminal svg size 1000,600 dynamic noenhanced font "sans,11" background "white"
set output {_quote(svg)}
set title {_quote(title + title_suffix)}
set logscale x 10
set format x "%g"
set xlabel "latency per fault (us, log scale)"
set ylabel {_quote(ylabel)}
set yrange [0:{1.05 if column == 3 else min(1.05, top * 1.15)}]
set grid
set key below
plot {plots}
""")
        _run(gp)
        produced.append(os.path.basename(svg))
    return produced
