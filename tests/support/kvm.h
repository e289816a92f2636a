// Guard for tests that need /dev/kvm: they skip visibly where it is absent, and
// fail instead when the test command says KVM must be there (PAGEVISOR_REQUIRE_KVM=1).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/support/seed.h"

#define PV_REQUIRE_KVM()                                                                   \
    do {                                                                                   \
        if (::access("/dev/kvm", R_OK | W_OK) != 0) {                                      \
            if (::pv::test::kvm_required()) FAIL() << "/dev/kvm is required but unusable"; \
            GTEST_SKIP() << "SKIPPING KVM TEST: /dev/kvm is absent or not accessible";     \
        }                                                                                  \
    } while (0)
