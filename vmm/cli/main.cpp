#include <iostream>

#include "vmm/cli/cli.h"

int main(int argc, char** argv) { return pv::cli::run_cli(argc, argv, std::cout, std::cerr); }
