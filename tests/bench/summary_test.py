#!/usr/bin/env python3
"""scripts/bench's summary and plot step on canned Google Benchmark JSON
(tests/bench/fixtures/results): ratios, statuses, --check, thread placement,
latency files, plots. Runs no benchmark. Registered in ctest by
tests/bench/CMakeLists.txt; run directly with `python3 tests/bench/summary_test.py`.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.realpath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(ROOT, "scripts", "bench")
FIXTURES = os.path.join(HERE, "fixtures")
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import bench_plot  # noqa: E402
import bench_summary  # noqa: E402


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def fixture_cpu_ns(binary, name, aggregate=None):
    """cpu_time in ns of one fixture entry (the median aggregate when asked)."""
    for e in load(os.path.join(FIXTURES, "results", binary + ".json"))["benchmarks"]:
        if e["run_name"] == name and e.get("aggregate_name") == aggregate:
            return e["cpu_time"] * bench_summary.NS_PER_UNIT[e["time_unit"]]
    raise KeyError(name)


def fixture_counter(binary, name, counter):
    values = [e[counter] for e in load(os.path.join(FIXTURES, "results", binary + ".json"))["benchmarks"]
              if e["run_name"] == name and counter in e]
    values.sort()
    return (values[(len(values) - 1) // 2] + values[len(values) // 2]) / 2


class SummaryFromFixture(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="pv-bench-summary-")
        cls.results = os.path.join(cls.tmp, "results")
        shutil.copytree(os.path.join(FIXTURES, "results"), cls.results)
        cls.cmd = [sys.executable, SCRIPT, "--from", cls.results, "--comparisons",
                   os.path.join(FIXTURES, "comparisons.json")]
        cls.plain = subprocess.run(cls.cmd, capture_output=True, text=True, check=False)
        cls.summary = load(os.path.join(cls.results, "summary.json"))
        cls.by_name = {c["name"]: c for c in cls.summary["comparisons"]}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def rows(self, name):
        return {r["subject"]: r for r in self.by_name[name]["results"]}

    def test_exit_status_and_check(self):
        self.assertEqual(self.plain.returncode, 0, self.plain.stderr)
        checked = subprocess.run(self.cmd + ["--check"], capture_output=True, text=True, check=False)
        self.assertEqual(checked.returncode, 1, checked.stdout)
        self.assertIn("renamed benchmark", checked.stdout)

    def test_ratio_uses_the_median_of_repetitions(self):
        row = self.rows("pair vs mimalloc")["pair64|slab"]
        expected = (fixture_cpu_ns("bench_alpha", "pair64|slab", "median") /
                    fixture_cpu_ns("bench_alpha", "pair64|mimalloc", "median"))
        self.assertAlmostEqual(row["ratio"], expected)
        self.assertEqual(row["subject_value"], fixture_cpu_ns("bench_alpha", "pair64|slab", "median"))
        self.assertNotEqual(row["subject_value"], fixture_cpu_ns("bench_alpha", "pair64|slab", "mean"))
        self.assertTrue(row["met"])
        self.assertEqual(self.by_name["pair vs mimalloc"]["status"], "ok")
        self.assertEqual(self.by_name["pair vs mimalloc"]["issue"], "3")

    def test_regex_subject_expands_the_baseline_and_converts_units(self):
        rows = self.rows("every case vs mimalloc")
        self.assertEqual(set(rows), {"pair64|slab", "worst|tlsf"})
        self.assertEqual(rows["worst|tlsf"]["baseline"], "worst|mimalloc")
        expected = fixture_cpu_ns("bench_alpha", "worst|tlsf") / fixture_cpu_ns("bench_alpha", "worst|mimalloc")
        self.assertAlmostEqual(rows["worst|tlsf"]["ratio"], expected)
        self.assertEqual(rows["worst|tlsf"]["unit"], "ns")
        self.assertIsNone(rows["worst|tlsf"]["met"])  # no target

    def test_target_unmet(self):
        row = self.rows("churn vs jemalloc")["churn|slab"]
        self.assertAlmostEqual(row["ratio"], fixture_cpu_ns("bench_alpha", "churn|slab") /
                               fixture_cpu_ns("bench_alpha", "churn|jemalloc"))
        self.assertGreater(row["ratio"], 1.0)
        self.assertFalse(row["met"])
        self.assertEqual(self.by_name["churn vs jemalloc"]["status"], "unmet")

    def test_counters_with_a_baseline_metric_and_regex_baseline(self):
        row = self.rows("boot vs bare VM")["BM_Boot/iterations:40"]
        self.assertEqual(row["baseline"], "BM_Bare/iterations:50")
        self.assertAlmostEqual(row["ratio"], fixture_counter("bench_beta", "BM_Boot/iterations:40", "exit_median_us") /
                               fixture_counter("bench_beta", "BM_Bare/iterations:50", "median_us"))
        self.assertIsNone(row["unit"])
        self.assertTrue(row["met"])
        hyper = self.rows("hypercall vs floor")["BM_Hyper/2000"]
        # Two repetitions without aggregates: the median of the runs.
        self.assertAlmostEqual(hyper["subject_value"], fixture_counter("bench_beta", "BM_Hyper/2000", "per_call_us"))
        self.assertAlmostEqual(hyper["ratio"], hyper["subject_value"] /
                               fixture_counter("bench_beta", "BM_Floor", "per_floor_us"))

    def test_statuses_of_broken_comparisons(self):
        self.assertEqual(self.by_name["broken subject"]["status"], "problem")
        self.assertIn("alloc failed", self.by_name["broken subject"]["results"][0]["problem"])
        self.assertEqual(self.by_name["missing baseline"]["status"], "problem")
        self.assertIn("churn|nosuch", self.by_name["missing baseline"]["results"][0]["problem"])
        self.assertEqual(self.by_name["renamed benchmark"]["status"], "no_results")
        self.assertEqual(self.by_name["binary not run"]["status"], "not_run")  # run.json: skipped
        self.assertEqual(self.by_name["binary removed"]["status"], "no_results")
        problems = "\n".join(self.summary["problems"])
        for name in ("broken subject", "missing baseline", "renamed benchmark", "binary removed", "broken.json",
                     "bench_truncated.json"):
            self.assertIn(name, problems)
        self.assertNotIn("binary not run", problems)

    def test_machine_placement_and_latency(self):
        self.assertEqual(self.summary["schema"], bench_summary.SCHEMA)
        self.assertEqual(self.summary["machine"]["kvm"]["flavour"], "PVM")
        placement = {(p["binary"], p["benchmark"]): p["placement"] for p in self.summary["thread_placement"]}
        self.assertEqual(placement[("bench_alpha", "placed|slab")],
                         {"placement": "same-cpu", "vcpu_cpu": "0", "handler_cpu": "0"})
        self.assertEqual(placement[("bench_beta", "BM_Hyper/2000")], {"vcpu_cpu": 1})
        beta = next(b for b in self.summary["binaries"] if b["binary"] == "bench_beta")
        self.assertEqual(beta["context"], {"kvm_flavour": "PVM"})
        empty = next(b for b in self.summary["binaries"] if b["binary"] == "bench_empty")
        self.assertEqual(empty["benchmarks"], 0)
        modes = {h["mode"]: h for h in self.summary["latency"]}
        self.assertEqual(set(modes), {"uffd-copy", "prepopulated"})
        raw = load(os.path.join(FIXTURES, "results", "latency", "uffd-copy.json"))
        self.assertEqual(modes["uffd-copy"]["count"], sum(b["count"] for b in raw["buckets"]))
        self.assertEqual(modes["uffd-copy"]["p99_ns"], raw["p99"])

    def test_markdown_table(self):
        with open(os.path.join(self.results, "ratios.md"), encoding="utf-8") as f:
            table = f.read()
        self.assertIn("`pair64\\|slab`", table)  # '|' escaped inside the cell
        self.assertIn("| 0.5x |", table)
        self.assertIn("**no**", table)
        self.assertNotIn("binary not run", table.split("Not run")[0])

    def test_plots(self):
        if bench_plot.gnuplot_path() is None:
            self.skipTest("gnuplot not installed (.ci/install-deps installs gnuplot-nox)")
        self.assertNotIn("plot_error", self.summary)
        for name in ("ratios-allocators.svg", "ratios-vm.svg", "fault-latency.svg", "fault-latency-cdf.svg"):
            self.assertIn(name, self.summary["plots"])
            with open(os.path.join(self.results, name), encoding="utf-8") as f:
                self.assertIn("<svg", f.read(2000))
        with open(os.path.join(self.results, "plots", "latency-uffd-copy.dat"), encoding="utf-8") as f:
            points = [[float(x) for x in line.split()] for line in f if not line.startswith("#")]
        latency_ns = [p[0] for p in points]
        cumulative = [p[2] for p in points]
        self.assertEqual(latency_ns, sorted(latency_ns))
        self.assertEqual(cumulative, sorted(cumulative))
        self.assertAlmostEqual(cumulative[-1], 1.0)
        raw = load(os.path.join(FIXTURES, "results", "latency", "uffd-copy.json"))
        first_nonempty = next(i for i, b in enumerate(raw["buckets"]) if b["count"] > 0)
        self.assertLess(latency_ns[0], raw["buckets"][first_nonempty]["le"])
        self.assertEqual(latency_ns[-1], raw["max"])  # the overflow bucket ends at max
        # Each bucket is one step at its fraction of all faults.
        fractions = {(points[i][0], points[i + 1][0]): points[i][1] for i in range(0, len(points), 2)}
        self.assertAlmostEqual(sum(fractions.values()), 1.0)


class Inputs(unittest.TestCase):
    def write(self, doc):
        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        self.addCleanup(os.remove, path)
        return path

    def test_project_comparisons_are_valid(self):
        comparisons = bench_summary.load_comparisons(os.path.join(ROOT, "bench", "comparisons.json"))
        self.assertTrue(comparisons)
        sources = {f[: -len(".cpp")] for f in os.listdir(os.path.join(ROOT, "bench")) if f.endswith(".cpp")}
        for c in comparisons:
            if "binary" in c:
                self.assertIn(c["binary"].removeprefix("bench_"), sources, c["name"])

    def test_bad_comparisons_are_rejected(self):
        good = {"name": "a", "subject": "x", "baseline": "y", "metric": "cpu_time"}
        for bad in ({**good, "subjet": "typo"}, {**good, "subject": "("}, {**good, "target": 0},
                    {**good, "target": "1"}, {k: v for k, v in good.items() if k != "metric"}):
            with self.assertRaises(bench_summary.InputError):
                bench_summary.load_comparisons(self.write({"comparisons": [bad]}))
        with self.assertRaises(bench_summary.InputError):
            bench_summary.load_comparisons(self.write({"comparisons": [good, good]}))
        with self.assertRaises(bench_summary.InputError):
            bench_summary.load_comparisons(self.write("{not json"))
        self.assertEqual(len(bench_summary.load_comparisons(self.write({"comparisons": [good]}))), 1)

    def test_bad_comparisons_file_is_a_one_line_error(self):
        path = self.write({"comparisons": [{"name": "a"}]})
        r = subprocess.run([sys.executable, SCRIPT, "--from", os.path.join(FIXTURES, "results"), "--comparisons", path],
                           capture_output=True, text=True, check=False)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("scripts/bench: error:", r.stderr)

    def test_latency_file_validation(self):
        ok = {"mode": "m", "unit": "ns", "buckets": [{"le": 10, "count": 1}, {"le": "+Inf", "count": 2}], "count": 3}
        h = bench_summary.parse_latency(self.write(ok))
        self.assertEqual(h["count"], 3)
        self.assertTrue(math.isinf(h["buckets"][-1][0]))
        for bad in ({**ok, "unit": "us"}, {**ok, "count": 4}, {**ok, "buckets": []},
                    {**ok, "buckets": [{"le": "+Inf", "count": 1}, {"le": 10, "count": 1}]},
                    {**ok, "buckets": [{"le": 10, "count": -1}]}, {**ok, "buckets": "x"}):
            with self.assertRaises(bench_summary.InputError):
                bench_summary.parse_latency(self.write(bad))

    def test_pagevisor_info_parsing(self):
        with open(os.path.join(FIXTURES, "results", "pagevisor-info.txt"), encoding="utf-8") as f:
            info = bench_summary.parse_pagevisor_info(f.read())
        self.assertEqual(info, {"flavour": "PVM", "api_version": 12, "max_vcpus": 1024, "memslots": 32764,
                                "numa_nodes": 1})
        self.assertEqual(bench_summary.read_machine(None, "no /dev/kvm")["kvm"],
                         {"flavour": "unknown", "error": "no /dev/kvm"})


if __name__ == "__main__":
    unittest.main()
