// Lets binaries take --flag-name as well as --flag_name: absl flags are C
// identifiers, while the documented command lines use dashes, like most
// server CLIs (Triton's --model-repository).
#ifndef HGPIPE_BASE_FLAGS_H_
#define HGPIPE_BASE_FLAGS_H_

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_replace.h"

namespace hgpipe {

// If the command line asks for help (--help, -h, --helpfull, --helpshort,
// before a bare "--"), prints the program's usage message and every flag
// defined in `main_file` (pass __FILE__ from the file that defines the
// binary's flags) with its help and default, then exits 0. absl's own
// --help lists only flags of a file named after the binary (none here) and
// exits 1. Call after absl::SetProgramUsageMessage, before parsing.
inline void HandleHelpFlag(int argc, char** argv, const char* main_file) {
  bool help = false;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (std::strcmp(a, "--") == 0) break;
    for (const char* h : {"--help", "-h", "-help", "--helpfull", "--helpshort"}) {
      if (std::strcmp(a, h) == 0) help = true;
    }
  }
  if (!help) return;
  std::printf("%s\n\nFlags (--name=value; dashes and underscores alike):\n",
              std::string(absl::ProgramUsageMessage()).c_str());
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // absl normalizes the recorded file name (drops a leading '/').
    const std::string file = flag->Filename();
    const std::string main = main_file;
    if (!file.empty() && main.size() >= file.size() &&
        main.compare(main.size() - file.size(), file.size(), file) == 0) {
      flags.push_back(flag);
    }
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  for (const absl::CommandLineFlag* f : flags) {
    std::printf("  --%s  %s\n      default: %s\n",
                absl::StrReplaceAll(f->Name(), {{"_", "-"}}).c_str(), f->Help().c_str(),
                f->DefaultValue().empty() ? "\"\"" : f->DefaultValue().c_str());
  }
  std::fflush(stdout);
  std::exit(0);
}

// Rewrites, in place, the name part of every "--name[=value]" argument
// before a bare "--", turning '-' into '_'. Values are left alone.
inline void DashesToUnderscores(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* a = argv[i];
    if (a[0] != '-' || a[1] != '-') continue;
    if (a[2] == '\0') return;  // "--": the rest are positional
    for (char* p = a + 2; *p != '\0' && *p != '='; ++p) {
      if (*p == '-') *p = '_';
    }
  }
}

}  // namespace hgpipe

#endif  // HGPIPE_BASE_FLAGS_H_
