// ntkit native core: common macros (framework-free; compiles with g++ and nvcc).
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define NTKIT_HD __host__ __device__
#else
#define NTKIT_HD
#endif

#define NTKIT_FORCEINLINE inline __attribute__((always_inline))

// Throws std::invalid_argument (mapped to ValueError by pybind11) when cond is false.
#define NTKIT_CHECK(cond, msg)                                   \
    do {                                                         \
        if (!(cond)) {                                           \
            std::ostringstream ntkit_check_os_;                  \
            ntkit_check_os_ << msg;                              \
            throw std::invalid_argument(ntkit_check_os_.str());  \
        }                                                        \
    } while (0)

namespace ntkit {
using index_t = std::int64_t;
}  // namespace ntkit
