# The two README commands: `make demo` (main job) and `make test` (every test).
# Both install their Debian dependencies first.
.PHONY: demo test deps build bench format format-check tidy clean

BUILD_DIR ?= build/release
JOBS ?= $(shell nproc)

deps:
	@.ci/install-deps

build: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	@.ci/demo $(BUILD_DIR)

test:
	@.ci/test-all

# Every benchmark, one command (docs/benchmarks.md): scripts/bench installs deps,
# builds Release in build/bench, runs every bench_* program and writes Google
# Benchmark JSON, summary.json (machine, ratios to baselines from the same run),
# ratios.md and plots to bench-results/<UTC time>/ (bench-results/latest).
# BENCH_ARGS goes to scripts/bench, e.g. BENCH_ARGS="--quick --check" or
# BENCH_ARGS="--filter pair64 --repetitions 5".
BENCH_ARGS ?=
bench:
	@scripts/bench $(BENCH_ARGS)

format:
	@git ls-files '*.h' '*.cpp' | xargs clang-format -i

format-check:
	@git ls-files '*.h' '*.cpp' | xargs clang-format --dry-run -Werror

tidy: build
	@git ls-files 'vmm/*.cpp' | xargs -r clang-tidy -p $(BUILD_DIR) --quiet

clean:
	rm -rf build
