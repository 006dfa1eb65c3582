// Multi-threaded host memcpy (OpenMP, defined in csrc/cpu/host_copy.cpp).
// Used by the CUDA path to move data between pinned staging buffers and the
// numpy arrays: a fresh numpy output is page-faulted on first write, and
// spreading the copy (and its faults) over the cores is several times faster
// than one thread.
#pragma once
#include <cstddef>

namespace ntkit {

void parallel_memcpy(void* dst, const void* src, std::size_t bytes);

}  // namespace ntkit
