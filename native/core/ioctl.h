// What an ioctl request number says about its argument.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

namespace p2pdma {

// The bytes a request says the kernel reads or writes; 0 for _IO and
// old-style requests, which encode no size (lib/core/ioctl.ts checks the ones it
// knows).
inline size_t EncodedSize(uint32_t req) {
  return _IOC_DIR(req) != _IOC_NONE ? _IOC_SIZE(req) : 0;
}

}  // namespace p2pdma
