#include <iostream>

#include "vmm/cli/cli.h"
#include "vmm/sandbox/seccomp.h"

int main(int argc, char** argv) {
    pv::sandbox::prepare_stdio();  // before any vCPU thread installs its filter and prints
    return pv::cli::run_cli(argc, argv, std::cout, std::cerr);
}
