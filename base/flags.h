// Lets binaries take --flag-name as well as --flag_name: absl flags are C
// identifiers, while the documented command lines use dashes, like most
// server CLIs (Triton's --model-repository).
#ifndef HGPIPE_BASE_FLAGS_H_
#define HGPIPE_BASE_FLAGS_H_

namespace hgpipe {

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
