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

# Every Google Benchmark program in Release; each compares against its own
# baseline in the same run. BENCH_ARGS is passed to every program.
BENCH_ARGS ?= --benchmark_min_time=0.1
bench: build
	@for b in $(BUILD_DIR)/bench/bench_*; do echo "=== $$b"; $$b $(BENCH_ARGS) || exit 1; done

format:
	@git ls-files '*.h' '*.cpp' | xargs clang-format -i

format-check:
	@git ls-files '*.h' '*.cpp' | xargs clang-format --dry-run -Werror

tidy: build
	@git ls-files 'vmm/*.cpp' | xargs -r clang-tidy -p $(BUILD_DIR) --quiet

clean:
	rm -rf build
