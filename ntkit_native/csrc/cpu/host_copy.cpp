// See ntkit/host_copy.hpp.
#include "ntkit/host_copy.hpp"

#include <cstring>

namespace ntkit {

void parallel_memcpy(void* dst, const void* src, std::size_t bytes) {
    constexpr std::size_t grain = std::size_t(1) << 20;  // 1 MiB per piece
    if (bytes <= 2 * grain) {
        std::memcpy(dst, src, bytes);
        return;
    }
    char* d = static_cast<char*>(dst);
    const char* s = static_cast<const char*>(src);
    const long long pieces = static_cast<long long>((bytes + grain - 1) / grain);
#pragma omp parallel for schedule(static)
    for (long long i = 0; i < pieces; ++i) {
        const std::size_t off = std::size_t(i) * grain;
        const std::size_t len = bytes - off < grain ? bytes - off : grain;
        std::memcpy(d + off, s + off, len);
    }
}

}  // namespace ntkit
