// Graph random features: random walks from every start node, with loads re-weighted by the
// walk prefix's probability and a modulation f(length) (Choromanski 2023; Reid et al. 2024).
// Randomness is counter-based (a splitmix64 chain keyed by seed, start node, walker, step),
// so the features do not depend on the number of threads or on how start nodes are split.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <exception>
#include <new>
#include <numeric>
#include <vector>

#include "ntkit/cpu_ops.hpp"

namespace ntkit {
namespace cpu {

namespace {
inline std::uint64_t mix64(std::uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
inline double u01(std::uint64_t seed, std::uint64_t stream, std::uint64_t a, std::uint64_t b, std::uint64_t c,
                  std::uint64_t d) {
    std::uint64_t h = mix64(seed ^ (stream * 0xD1B54A32D192ED03ull));
    h = mix64(h ^ a);
    h = mix64(h ^ b);
    h = mix64(h ^ c);
    h = mix64(h ^ d);
    return double(h >> 11) * 0x1.0p-53;
}

struct Walker {
    index_t v;
    double load;
    index_t id;
};
}  // namespace

void grf_features(const index_t* indptr, const index_t* indices, const double* U, index_t n,
                  const index_t* starts, index_t n_starts, index_t n_walks, double p_halt, const double* f,
                  index_t f_len, std::uint64_t seed, int mode, std::vector<index_t>& row_ptr,
                  std::vector<index_t>& cols, std::vector<double>& vals, long long& steps_out) {
    const bool antithetic = (mode & 1) != 0;
    const bool repelling = (mode & 2) != 0;
    const index_t L = f_len - 1;  // walks are cut at length L (f is zero beyond, or negligible)
    const double inv_keep = 1.0 / (1.0 - p_halt);
    std::vector<std::vector<index_t>> rc(n_starts);
    std::vector<std::vector<double>> rv(n_starts);
    long long steps = 0;
    // An exception leaving an OpenMP region calls std::terminate: the first one (std::bad_alloc
    // for a huge n_walks) is kept, the remaining start nodes are skipped, and it is rethrown below.
    std::exception_ptr error;
    std::atomic<bool> failed{false};
    auto keep_error = [&] {
#pragma omp critical(ntkit_grf_error)
        if (!error) error = std::current_exception();
        failed.store(true);
    };
#pragma omp parallel reduction(+ : steps)
    {
        std::vector<double> acc;
        std::vector<char> mark;
        std::vector<index_t> touched;
        std::vector<Walker> live, next;
        try {
            acc.assign(std::size_t(n), 0.0);
            mark.assign(std::size_t(n), 0);
            if (std::size_t(n_walks) > live.max_size()) throw std::bad_alloc();  // not length_error
            live.reserve(std::size_t(n_walks));
            next.reserve(std::size_t(n_walks));
        } catch (...) {
            keep_error();
        }
#pragma omp for schedule(dynamic, 64)
        for (index_t s = 0; s < n_starts; ++s) try {
            if (failed.load(std::memory_order_relaxed)) continue;
            const index_t start = starts[s];
            touched.clear();
            auto add = [&](index_t v, double x) {
                if (!mark[v]) {
                    mark[v] = 1;
                    touched.push_back(v);
                }
                acc[v] += x;
            };
            auto halts = [&](index_t w, index_t l) {
                if (antithetic) {  // walkers 2k and 2k+1 share a uniform, the second shifted by 1/2
                    double u = u01(seed, 1, std::uint64_t(start), std::uint64_t(w / 2), std::uint64_t(l), 0);
                    if (w & 1) u = u + 0.5 >= 1.0 ? u - 0.5 : u + 0.5;
                    return u < p_halt;
                }
                return u01(seed, 1, std::uint64_t(start), std::uint64_t(w), std::uint64_t(l), 0) < p_halt;
            };
            live.clear();
            for (index_t w = 0; w < n_walks; ++w) live.push_back({start, 1.0, w});
            add(start, f[0] * double(n_walks));
            for (index_t l = 1; l <= L && !live.empty(); ++l) {
                next.clear();
                for (const Walker& wk : live)
                    if (!halts(wk.id, l) && indptr[wk.v + 1] > indptr[wk.v]) next.push_back(wk);
                if (repelling) {  // walkers on the same vertex take distinct neighbours where possible
                    std::sort(next.begin(), next.end(), [](const Walker& a, const Walker& b) {
                        return a.v < b.v || (a.v == b.v && a.id < b.id);
                    });
                    std::size_t g0 = 0;
                    while (g0 < next.size()) {
                        std::size_t g1 = g0;
                        const index_t v = next[g0].v;
                        while (g1 < next.size() && next[g1].v == v) ++g1;
                        const index_t deg = indptr[v + 1] - indptr[v];
                        const index_t w = index_t(g1 - g0);
                        for (index_t k = 0; k < w; ++k) {
                            const index_t block = k / deg, kb = k % deg;
                            const index_t bsize = std::min(deg, w - block * deg);
                            const double sh = u01(seed, 3, std::uint64_t(start), std::uint64_t(v), std::uint64_t(l),
                                                  std::uint64_t(block));
                            double pos = double(kb) / double(bsize) + sh;
                            if (pos >= 1.0) pos -= 1.0;
                            index_t j = index_t(pos * double(deg));
                            if (j >= deg) j = deg - 1;
                            Walker& wk = next[g0 + std::size_t(k)];
                            const index_t e = indptr[v] + j;
                            wk.load *= U[e] * double(deg) * inv_keep;
                            wk.v = indices[e];
                        }
                        g0 = g1;
                    }
                } else {
                    for (Walker& wk : next) {
                        const index_t deg = indptr[wk.v + 1] - indptr[wk.v];
                        index_t j = index_t(u01(seed, 2, std::uint64_t(start), std::uint64_t(wk.id), std::uint64_t(l), 0) *
                                            double(deg));
                        if (j >= deg) j = deg - 1;
                        const index_t e = indptr[wk.v] + j;
                        wk.load *= U[e] * double(deg) * inv_keep;
                        wk.v = indices[e];
                    }
                }
                steps += (long long)next.size();
                for (const Walker& wk : next) add(wk.v, f[l] * wk.load);
                live.swap(next);
            }
            std::sort(touched.begin(), touched.end());
            auto& c = rc[s];
            auto& vv = rv[s];
            c.reserve(touched.size());
            vv.reserve(touched.size());
            const double scale = 1.0 / double(n_walks);
            for (index_t v : touched) {
                if (acc[v] != 0.0) {
                    c.push_back(v);
                    vv.push_back(acc[v] * scale);
                }
                acc[v] = 0.0;
                mark[v] = 0;
            }
        } catch (...) {
            keep_error();
        }
    }
    if (error) std::rethrow_exception(error);
    row_ptr.assign(std::size_t(n_starts) + 1, 0);
    for (index_t s = 0; s < n_starts; ++s) row_ptr[s + 1] = row_ptr[s] + index_t(rc[s].size());
    cols.resize(std::size_t(row_ptr[n_starts]));
    vals.resize(std::size_t(row_ptr[n_starts]));
#pragma omp parallel for schedule(static)
    for (index_t s = 0; s < n_starts; ++s) {
        std::copy(rc[s].begin(), rc[s].end(), cols.begin() + row_ptr[s]);
        std::copy(rv[s].begin(), rv[s].end(), vals.begin() + row_ptr[s]);
    }
    steps_out = steps;
}

}  // namespace cpu
}  // namespace ntkit
