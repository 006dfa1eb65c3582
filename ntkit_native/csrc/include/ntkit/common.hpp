// ntkit native core: common macros (framework-free; compiles with g++ and nvcc).
#pragma once
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define NTKIT_HD __host__ __device__
#else
#define NTKIT_HD
#endif

#define NTKIT_FORCEINLINE inline __attribute__((always_inline))

// Throws std::invalid_argument (mapped to ValueError by pybind11) when cond is false.
// The message is built by ntkit::detail::Msg, not std::ostringstream: formatting a
// number through iostreams uses the locale's facets, and on a toolchain that links
// part of libstdc++ statically into the extension (seen with /opt/gcc on the GPU
// image) the facet ids of the two copies disagree and `os << 0.5` segfaults.
#define NTKIT_CHECK(cond, msg)                                       \
    do {                                                             \
        if (!(cond)) {                                               \
            ::ntkit::detail::Msg ntkit_check_msg_;                   \
            ntkit_check_msg_ << msg;                                 \
            throw std::invalid_argument(ntkit_check_msg_.str);       \
        }                                                            \
    } while (0)

namespace ntkit {
using index_t = std::int64_t;

namespace detail {
// Minimal locale-free message builder for NTKIT_CHECK (numbers via snprintf).
struct Msg {
    std::string str;
    Msg& operator<<(const char* s) { str += s; return *this; }
    Msg& operator<<(const std::string& s) { str += s; return *this; }
    Msg& operator<<(char c) { str += c; return *this; }
    Msg& operator<<(double v) { return num("%g", v); }
    Msg& operator<<(float v) { return num("%g", double(v)); }
    Msg& operator<<(int v) { return num("%d", v); }
    Msg& operator<<(long v) { return num("%ld", v); }
    Msg& operator<<(long long v) { return num("%lld", v); }
    Msg& operator<<(unsigned long v) { return num("%lu", v); }
    Msg& operator<<(unsigned long long v) { return num("%llu", v); }

   private:
    template <class V>
    Msg& num(const char* fmt, V v) {
        char buf[64];
        std::snprintf(buf, sizeof buf, fmt, v);
        str += buf;
        return *this;
    }
};
}  // namespace detail
}  // namespace ntkit
