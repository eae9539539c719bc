#include "base/thread_name.h"

#include <pthread.h>

#include <string>

namespace hgpipe {

void NameThisThread(absl::string_view name) {
  // The kernel's limit is 16 bytes with the terminator; pthread_setname_np
  // refuses a longer name instead of cutting it.
  const std::string cut(name.substr(0, 15));
  pthread_setname_np(pthread_self(), cut.c_str());
}

std::string ThisThreadName() {
  char name[16] = {};
  if (pthread_getname_np(pthread_self(), name, sizeof(name)) != 0) return "";
  return name;
}

}  // namespace hgpipe
