"""Summary of one benchmark run: machine, per-binary runs, comparisons (ratios
subject/baseline measured in the same run), thread placement and fault
latency. Used by scripts/bench; pure functions over the files of a results
directory, so tests/bench/summary_test.py runs them on canned JSON.

Formats: docs/benchmarks.md.
"""

import json
import math
import os
import re
import statistics

SCHEMA = "pagevisor-bench-summary/1"
TIME_METRICS = ("real_time", "cpu_time")
NS_PER_UNIT = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
COMPARISON_KEYS = {"name", "subject", "baseline", "metric", "baseline_metric", "target", "issue", "binary",
                   "group", "note"}
# Labels "placement=same-cpu vcpu_cpu=0 handler_cpu=0" and counters "vcpu_cpu",
# "handler_cpu": how a benchmark records where its threads ran.
PLACEMENT_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=(\S+)")


class InputError(Exception):
    """A malformed input file: reported in one line, never a traceback."""


# ---- comparisons.json -----------------------------------------------------------------


def load_comparisons(path):
    """The validated comparison list; InputError says what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: {e}") from None
    items = doc.get("comparisons") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise InputError(f"{path}: expected an object with a 'comparisons' list")
    names = set()
    for i, c in enumerate(items):
        where = f"{path}: comparison {i}"
        if not isinstance(c, dict):
            raise InputError(f"{where}: not an object")
        unknown = set(c) - COMPARISON_KEYS
        if unknown:
            raise InputError(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("name", "subject", "baseline", "metric"):
            if not isinstance(c.get(key), str) or not c[key]:
                raise InputError(f"{where}: '{key}' must be a non-empty string")
        if c["name"] in names:
            raise InputError(f"{where}: duplicate name '{c['name']}'")
        names.add(c["name"])
        try:
            re.compile(c["subject"])
        except re.error as e:
            raise InputError(f"{where} ({c['name']}): bad subject regex: {e}") from None
        target = c.get("target")
        if target is not None and (not isinstance(target, (int, float)) or isinstance(target, bool) or target <= 0):
            raise InputError(f"{where} ({c['name']}): 'target' must be a positive number")
        for key in ("baseline_metric", "issue", "binary", "group", "note"):
            if key in c and not isinstance(c[key], (str, int)):
                raise InputError(f"{where} ({c['name']}): '{key}' must be a string")
    return items


# ---- Google Benchmark JSON --------------------------------------------------------------


def load_benchmark_file(path):
    """(context, entries) of one Google Benchmark JSON file; an empty file (no
    benchmark matched the filter) has none."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if not text.strip():
            return {}, []
        doc = json.loads(text)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks", []), list):
        raise InputError(f"{path}: not a Google Benchmark JSON file")
    return doc.get("context", {}), [b for b in doc.get("benchmarks", []) if isinstance(b, dict)]


def metric_value(entry, metric):
    """(value, unit) of a metric in one benchmark entry; times in ns."""
    if metric in TIME_METRICS:
        scale = NS_PER_UNIT.get(entry.get("time_unit", "ns"))
        value = entry.get(metric)
        if scale is None or not isinstance(value, (int, float)):
            return None, None
        return float(value) * scale, "ns"
    value = entry.get(metric)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), None
    return None, None


def collapse(entries):
    """One record per benchmark (run_name): the median aggregate when
    repetitions produced one, else the median of the iteration runs."""
    by_name = {}
    for e in entries:
        name = e.get("run_name") or e.get("name")
        if isinstance(name, str):
            by_name.setdefault(name, []).append(e)
    records = {}
    for name, group in by_name.items():
        errors = [e for e in group if e.get("error_occurred")]
        medians = [e for e in group if e.get("run_type") == "aggregate" and e.get("aggregate_name") == "median"]
        runs = [e for e in group if e.get("run_type", "iteration") == "iteration" and not e.get("error_occurred")]
        rec = {"name": name, "label": next((e.get("label") for e in group if e.get("label")), None),
               "repetitions": len(runs), "error": errors[0].get("error_message", "error") if errors else None}
        if medians:
            rec["entry"] = medians[0]
        elif len(runs) == 1:
            rec["entry"] = runs[0]
        elif runs:
            rec["entry"] = median_entry(runs)
        else:
            rec["entry"] = None
        records[name] = rec
    return records


def median_entry(runs):
    """An entry whose numeric fields are the medians over the runs."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
            out[key] = statistics.median(values)
    return out


def load_results(results_dir):
    """({binary: {"context", "records"}}, problems) for every bench_*.json in
    results_dir; a malformed file (a program killed mid-write) is a problem."""
    results, problems = {}, []
    for fname in sorted(os.listdir(results_dir)):
        if not (fname.startswith("bench_") and fname.endswith(".json")):
            continue
        try:
            context, entries = load_benchmark_file(os.path.join(results_dir, fname))
        except InputError as e:
            problems.append(str(e))
            continue
        results[fname[: -len(".json")]] = {"context": context, "records": collapse(entries)}
    return results, problems


# ---- comparisons -------------------------------------------------------------------------


def find_baseline(results, binary, name):
    """(binary, record) of the baseline: exact name first (same binary, then
    any), else a regex matching exactly one benchmark."""
    order = [binary] + [b for b in results if b != binary]
    for b in order:
        if b in results and name in results[b]["records"]:
            return b, results[b]["records"][name]
    try:
        pattern = re.compile(name)
    except re.error:
        return None, None
    for b in order:
        if b not in results:
            continue
        hits = [r for n, r in results[b]["records"].items() if pattern.fullmatch(n)]
        if len(hits) == 1:
            return b, hits[0]
    return None, None


def compare_one(c, binary, subject, baseline_name, results):
    """One result row of comparison c for one matched subject benchmark."""
    row = {"subject": subject["name"], "baseline": baseline_name, "binary": binary,
           "subject_value": None, "baseline_value": None, "unit": None, "ratio": None, "met": None,
           "label": subject["label"]}
    base_binary, base = find_baseline(results, binary, baseline_name)
    if base is None:
        row["problem"] = f"baseline '{baseline_name}' not found"
        return row
    row["baseline"] = base["name"]
    if base_binary != binary:
        row["baseline_binary"] = base_binary
    for which, rec, metric in (("subject", subject, c["metric"]),
                               ("baseline", base, c.get("baseline_metric", c["metric"]))):
        if rec["error"]:
            row["problem"] = f"{which} '{rec['name']}' failed: {rec['error']}"
            return row
        value, unit = metric_value(rec["entry"] or {}, metric)
        if value is None:
            row["problem"] = f"{which} '{rec['name']}' has no metric '{metric}'"
            return row
        row[f"{which}_value"] = value
        row["unit"] = unit
    if row["baseline_value"] == 0:
        row["problem"] = "baseline value is 0"
        return row
    row["ratio"] = row["subject_value"] / row["baseline_value"]
    if c.get("target") is not None:
        row["met"] = row["ratio"] <= c["target"]
    return row


def evaluate(comparisons, results, skipped_binaries=(), filtered=False):
    """Every comparison with its result rows and a status:
    ok | unmet | problem | no_results | not_run | filtered. not_run: its
    program exists but was not selected (skipped_binaries); a program that
    does not exist, failed or wrote nothing gives no_results."""
    out = []
    for c in comparisons:
        entry = {k: c[k] for k in ("name", "subject", "baseline", "metric", "baseline_metric", "target", "issue",
                                   "binary", "group", "note") if k in c}
        entry.setdefault("target", None)
        rows = []
        pattern = re.compile(c["subject"])
        for binary, res in results.items():
            if c.get("binary") and c["binary"] != binary:
                continue
            for name, rec in res["records"].items():
                m = pattern.fullmatch(name)
                if m:
                    try:
                        baseline_name = m.expand(c["baseline"])
                    except (re.error, IndexError) as e:
                        baseline_name = c["baseline"]
                        rows.append({"subject": name, "binary": binary, "ratio": None, "met": None,
                                     "problem": f"bad baseline template: {e}"})
                        continue
                    row = compare_one(c, binary, rec, baseline_name, results)
                    # What tells the rows of one comparison apart: the subject's groups.
                    row["variant"] = " ".join(g for g in m.groups() if g) or name
                    rows.append(row)
        entry["results"] = rows
        entry["status"] = status_of(c, rows, skipped_binaries, filtered)
        out.append(entry)
    return out


def status_of(c, rows, skipped_binaries, filtered):
    if not rows:
        if c.get("binary") in skipped_binaries:
            return "not_run"
        return "filtered" if filtered else "no_results"
    if any("problem" in r for r in rows):
        return "problem"
    if any(r["met"] is False for r in rows):
        return "unmet"
    return "ok"


# ---- thread placement, latency, machine ------------------------------------------------------


def thread_placement(results):
    """Benchmarks that record where their threads ran (label tokens or counters)."""
    out = []
    for binary, res in results.items():
        for name, rec in res["records"].items():
            placement = {}
            label = rec["label"] or ""
            for key, value in PLACEMENT_TOKEN.findall(label):
                if key == "placement" or key.endswith("_cpu") or key == "threads":
                    placement[key] = value
            for key, value in (rec["entry"] or {}).items():
                if key.endswith("_cpu") and isinstance(value, (int, float)):
                    placement[key] = value
            if placement:
                out.append({"binary": binary, "benchmark": name, "label": rec["label"], "placement": placement})
    return out


def load_latency(latency_dir):
    """(histograms, problems) from <mode>.json files (bench/support/latency_export.h)."""
    hists, problems = [], []
    if not os.path.isdir(latency_dir):
        return hists, problems
    for fname in sorted(os.listdir(latency_dir)):
        if not fname.endswith(".json"):
            continue
        path = os.path.join(latency_dir, fname)
        try:
            hists.append(parse_latency(path))
        except InputError as e:
            problems.append(str(e))
    return hists, problems


def parse_latency(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("mode"), str) or doc.get("unit") != "ns":
        raise InputError(f"{path}: needs 'mode' and 'unit': 'ns'")
    buckets, prev = [], -math.inf
    for b in doc.get("buckets") if isinstance(doc.get("buckets"), list) else []:
        b = b if isinstance(b, dict) else {}
        le = math.inf if b.get("le") == "+Inf" else b.get("le")
        count = b.get("count")
        numbers = isinstance(le, (int, float)) and isinstance(count, int) and not isinstance(count, bool)
        if not numbers or isinstance(le, bool) or count < 0 or le <= prev:
            raise InputError(f"{path}: bad bucket {b!r} (le must increase, count >= 0)")
        if prev == math.inf:
            raise InputError(f"{path}: a bucket follows the '+Inf' bucket")
        buckets.append((float(le), count))
        prev = le
    if not buckets:
        raise InputError(f"{path}: no buckets")
    total = sum(c for _, c in buckets)
    if doc.get("count", total) != total:
        raise InputError(f"{path}: count {doc.get('count')} != sum of bucket counts {total}")
    stats = {k: float(doc[k]) for k in ("p50", "p99", "max") if isinstance(doc.get(k), (int, float))}
    return {"mode": doc["mode"], "file": os.path.basename(path), "buckets": buckets, "count": total,
            "p50_ns": stats.get("p50"), "p99_ns": stats.get("p99"), "max_ns": stats.get("max")}


def parse_pagevisor_info(text):
    """The fields of `pagevisor info` output (vmm/cli/info.cpp) scripts rely on."""
    fields = {}
    keys = {"KVM flavour": "flavour", "KVM API version": "api_version", "max vCPUs per VM": "max_vcpus",
            "memslots per VM": "memslots", "host NUMA nodes": "numa_nodes"}
    for line in text.splitlines():
        if ":" not in line or line.startswith(" "):
            continue
        key, _, value = line.partition(":")
        if key.strip() in keys:
            value = value.strip()
            name = keys[key.strip()]
            if name == "numa_nodes":
                value = value.split()[0] if value else ""
            fields[name] = int(value) if value.isdigit() else value
    return fields


def read_machine(info_text=None, info_error=None):
    """CPU model, cores, memory, kernel, and the KVM fields of `pagevisor info`."""
    machine = {"cpu_model": None, "cores": os.cpu_count(), "memory_bytes": None, "kernel": os.uname().release}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    machine["cpu_model"] = line.partition(":")[2].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    machine["memory_bytes"] = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    machine["cpus_allowed"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    kvm = parse_pagevisor_info(info_text) if info_text else {}
    kvm.setdefault("flavour", "unknown")
    if info_error:
        kvm["error"] = info_error
    machine["kvm"] = kvm
    return machine


# ---- the summary ---------------------------------------------------------------------------------


def summarize(results_dir, comparisons, machine, meta=None, skipped_binaries=(), filtered=False):
    """The summary.json document for a results directory."""
    results, result_problems = load_results(results_dir)
    hists, latency_problems = load_latency(os.path.join(results_dir, "latency"))
    compared = evaluate(comparisons, results, skipped_binaries, filtered)
    summary = {"schema": SCHEMA}
    summary.update(meta or {})
    summary["machine"] = machine
    summary["binaries"] = [binary_summary(b, res) for b, res in results.items()]
    summary["comparisons"] = compared
    summary["thread_placement"] = thread_placement(results)
    summary["latency"] = [{k: h[k] for k in ("mode", "file", "count", "p50_ns", "p99_ns", "max_ns")} for h in hists]
    problems = [f"comparison '{c['name']}': {c['status'].replace('_', ' ')}" +
                "".join(f"; {r['problem']}" for r in c["results"] if "problem" in r)
                for c in compared if c["status"] in ("no_results", "problem")]
    problems += result_problems + latency_problems
    summary["problems"] = problems
    return summary, hists


def binary_summary(binary, res):
    ctx = res["context"]
    custom = {k: v for k, v in ctx.items() if k not in {
        "date", "host_name", "executable", "num_cpus", "mhz_per_cpu", "cpu_scaling_enabled", "caches",
        "load_avg", "library_build_type", "json_schema_version"}}
    return {"binary": binary, "results": binary + ".json", "benchmarks": len(res["records"]),
            "failed": sorted(n for n, r in res["records"].items() if r["error"]),
            "load_avg": ctx.get("load_avg"), "library_build_type": ctx.get("library_build_type"),
            "context": custom}


def format_ratio(r):
    if r is None:
        return "-"
    if r < 0.01:
        return f"1/{1 / r:.0f}"
    if r >= 10:
        return f"{r:.0f}x"
    text = f"{r:.3g}"
    if float(text) == 1.0 and r != 1.0:  # 0.9996 or 1.0046 must not read as 1 next to a 1x target
        text = f"{r:.4f}"
    return text + "x"


def format_value(v, unit):
    if v is None:
        return "-"
    if unit != "ns":
        return f"{v:.4g}"
    for scale, name in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
        if v >= scale:
            return f"{v / scale:.3g} {name}"
    return f"{v:.3g} ns"


def md(text):
    """Text inside a markdown table cell ('|' in benchmark names)."""
    return str(text).replace("|", "\\|")


def ratio_table(summary):
    """A markdown table of every comparison row (for the README)."""
    m = summary["machine"]
    lines = [f"Machine: {m.get('cpu_model')}, {m.get('cores')} cores, kernel {m.get('kernel')}, "
             f"KVM flavour {m.get('kvm', {}).get('flavour')}. Ratio = subject / baseline, same run.", "",
             "| comparison | subject | baseline | metric | subject | baseline | ratio | target | met |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    skipped = [c["name"] for c in summary["comparisons"] if c["status"] in ("not_run", "filtered")]
    for c in summary["comparisons"]:
        if c["name"] in skipped:
            continue
        target = "-" if c["target"] is None else f"{c['target']:g}x"
        metric = c["metric"] + (f" / {c['baseline_metric']}" if c.get("baseline_metric") else "")
        if not c["results"]:
            lines.append(f"| {md(c['name'])} | `{md(c['subject'])}` | `{md(c['baseline'])}` | {md(metric)} | - | - "
                         f"| - | {target} | {c['status'].replace('_', ' ')} |")
        for r in c["results"]:
            met = {True: "yes", False: "**no**", None: "-"}[r["met"]] if "problem" not in r else md(r["problem"])
            lines.append(f"| {md(c['name'])} | `{md(r['subject'])}` | `{md(r.get('baseline', '-'))}` | {md(metric)} | "
                         f"{format_value(r.get('subject_value'), r.get('unit'))} | "
                         f"{format_value(r.get('baseline_value'), r.get('unit'))} | {format_ratio(r['ratio'])} | "
                         f"{target} | {met} |")
    if skipped:
        lines += ["", "Not run (program not selected or filtered out): " + "; ".join(skipped) + "."]
    return "\n".join(lines) + "\n"
