// gtest main shared by every test binary: prints the randomized-test seed so
// that any failure can be reproduced with PAGEVISOR_SEED=<n>.
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/support/seed.h"

int main(int argc, char** argv) {
    testing::InitGoogleTest(&argc, argv);
    std::printf("pagevisor test seed: %llu (set PAGEVISOR_SEED to reproduce)\n",
                static_cast<unsigned long long>(pv::test::base_seed()));
    return RUN_ALL_TESTS();
}
