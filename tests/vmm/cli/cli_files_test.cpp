// Files named on the command line that exist but cannot be read (found by
// fuzz_cli: `run --rom /` made libstdc++ throw from the read and pagevisor
// abort): a one-line I/O error and exit status 8, like a missing file.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "vmm/cli/cli.h"
#include "vmm/run/metrics.h"

namespace pv::cli {
namespace {

struct Outcome {
    int status;
    std::string out;
    std::string err;
};

Outcome run(const char* flag, const char* path) {
    const char* argv[] = {"pagevisor", "run", flag, path, "--quiet", nullptr};
    std::ostringstream out, err;
    int status = run_cli(5, argv, out, err);
    return {status, out.str(), err.str()};
}

TEST(CliFiles, DirectoryAsRomIsAnIoError) {
    Outcome o = run("--rom", "/");
    EXPECT_EQ(o.status, 8) << o.err;
    EXPECT_EQ(o.err.rfind("pagevisor: error: cannot read ROM file '/'", 0), 0u) << o.err;
    EXPECT_EQ(o.err.find('\n') + 1, o.err.size()) << o.err;  // one line
}

TEST(CliFiles, DirectoryAsConfigIsAnIoError) {
    Outcome o = run("--config", "/");
    EXPECT_EQ(o.status, 8) << o.err;
    EXPECT_EQ(o.err.rfind("pagevisor: error: cannot read config file '/'", 0), 0u) << o.err;
}

TEST(CliFiles, ReusedCommandLineAgreesWithAFreshOne) {
    CommandLine cli;
    const char* runs[][4] = {{"pagevisor", "run", "--rom", "/"},
                             {"pagevisor", "run", "--memory", "41M"},
                             {"pagevisor", "run", "--vcpus", "0"},
                             {"pagevisor", "--version", nullptr, nullptr}};
    for (auto& argv : runs) {
        const int argc = argv[3] != nullptr ? 4 : 2;
        std::ostringstream out1, err1, out2, err2;
        const int reused = cli.run(argc, argv, out1, err1);
        const int fresh = run_cli(argc, argv, out2, err2);
        EXPECT_EQ(reused, fresh) << argv[2];
        EXPECT_EQ(out1.str(), out2.str());
        EXPECT_EQ(err1.str(), err2.str());
    }
}

// A workload name with invalid UTF-8 in the metrics line: replaced, not thrown
// (found by fuzz_cli: nlohmann::json's dump threw type_error 316 and pagevisor aborted).
TEST(CliFiles, MetricsLineWithInvalidUtf8IsWritten) {
    const std::string path = testing::TempDir() + "pv_metrics_utf8.jsonl";
    std::remove(path.c_str());
    nlohmann::ordered_json line;
    line["workload"] = std::string("x\xf6y");
    ASSERT_TRUE(run::append_metrics_line(path, line).has_value());
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text, "{\"workload\":\"x\xef\xbf\xbdy\"}\n");
    std::remove(path.c_str());
}

}  // namespace
}  // namespace pv::cli
