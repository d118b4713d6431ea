#include <iostream>
#include <string>
#include <vector>

#include "app/cli/commands.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  return cmdistill::cli::RunCli(args, {std::cout, std::cerr});
}
