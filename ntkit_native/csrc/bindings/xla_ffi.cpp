// XLA FFI custom calls into the framework-free cores (the only file besides
// module.cpp that knows a framework; it includes jaxlib's xla/ffi/api/ffi.h).
//
// Targets (same names on both platforms; see ntkit_native/_jax_ffi.py):
//   ntkit_gram           X (..., n, d), Z (..., m, d)            -> (..., n, m)
//   ntkit_kernel_matvec  X (..., n, d), Z (..., m, d), v (..., m, t) -> (..., n, t)
//   ntkit_batched_gram   A (..., b, n, p), B (..., b, m, p)     -> (..., b, n, m) or (..., n, m)
// float32 or float64 (one dtype for all operands and the result), row-major
// dense buffers (jax.ffi.ffi_call's default layouts). Leading "..." dimensions
// come from jax.vmap (vmap_method="expand_dims"): the result's leading
// dimensions are the batch, and each operand's leading dimension equals the
// result's or is 1 (broadcast without a copy).
// Attributes: kernel (int64, index into ntkit::kernel_names()), lengthscale,
// degree, gamma, coef0, depth, weight_std, bias_std (the ntkit_native
// parameter vocabulary), symmetric (bool: Z is X, exact diagonal; Z's buffer is
// then not read), reduce_sum (bool, batched_gram).
//
// CPU handlers call ntkit::cpu::*; CUDA handlers call the stream-ordered
// ntkit::cuda::*_device entry points with XLA's stream and XLA's scratch
// allocator: device buffers in place, no host copies, no synchronisation.
// Errors (bad shapes, parameters, CUDA / cuBLAS failures) are returned as FFI
// errors, never thrown across the C boundary and never aborting.
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ntkit/cpu_ops.hpp"
#include "ntkit/ffi_targets.hpp"
#include "ntkit/kernels.hpp"
#include "xla/ffi/api/ffi.h"
#ifdef NTKIT_WITH_CUDA
#include "ntkit/cuda_ops.hpp"
#endif

namespace ffi = xla::ffi;
using ntkit::index_t;

namespace {

// ---------------------------------------------------------------- helpers
template <class F>
ffi::Error guarded(F&& body) {
    try {
        body();
        return ffi::Error::Success();
    } catch (const std::invalid_argument& e) {
        return ffi::Error(ffi::ErrorCode::kInvalidArgument, std::string("ntkit: ") + e.what());
    } catch (const std::bad_alloc&) {
        return ffi::Error(ffi::ErrorCode::kResourceExhausted, "ntkit: out of memory");
    } catch (const std::exception& e) {
        return ffi::Error(ffi::ErrorCode::kInternal, std::string("ntkit: ") + e.what());
    } catch (...) {
        return ffi::Error(ffi::ErrorCode::kInternal, "ntkit: unknown error");
    }
}

std::string shape_str(ffi::AnyBuffer::Dimensions dims) {
    std::string s = "(";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + (dims.size() == 1 ? ",)" : ")");
}

// Leading (batch) dimensions of the result and, per operand, the element offset
// of each batch entry (stride 0 along a size-1 leading dimension).
class Batch {
   public:
    Batch(ffi::AnyBuffer::Dimensions out, int core) {
        const int nb = int(out.size()) - core;
        for (int i = 0; i < nb; ++i) dims_.push_back(out[i]);
        count_ = 1;
        for (int64_t v : dims_) count_ *= v;
    }
    int64_t count() const { return count_; }
    size_t rank() const { return dims_.size(); }

    // strides (elements) of an operand with `core` trailing core dimensions
    std::vector<int64_t> strides(ffi::AnyBuffer::Dimensions in, int core, const char* name) const {
        if (in.size() != dims_.size() + size_t(core))
            throw std::invalid_argument(std::string(name) + " has shape " + shape_str(in) + "; expected " +
                                        std::to_string(dims_.size() + core) + " dimensions");
        int64_t inner = 1;
        for (size_t i = dims_.size(); i < in.size(); ++i) inner *= in[i];
        std::vector<int64_t> st(dims_.size());
        for (int i = int(dims_.size()) - 1; i >= 0; --i) {
            if (in[i] != dims_[i] && in[i] != 1)
                throw std::invalid_argument(std::string(name) + " has shape " + shape_str(in) +
                                            ": leading dimensions must match the result's or be 1");
            st[i] = in[i] == 1 ? 0 : inner;
            inner *= in[i];
        }
        return st;
    }
    int64_t offset(int64_t flat, const std::vector<int64_t>& st) const {
        int64_t off = 0;
        for (int i = int(dims_.size()) - 1; i >= 0; --i) {
            off += (flat % dims_[i]) * st[i];
            flat /= dims_[i];
        }
        return off;
    }

   private:
    std::vector<int64_t> dims_;
    int64_t count_ = 1;
};

// the core (trailing) dimension k of an operand of rank r
inline int64_t core(ffi::AnyBuffer::Dimensions d, int k_from_end) { return d[d.size() - k_from_end]; }

struct KernelAttrs {
    int64_t kernel;
    double lengthscale;
    int64_t degree;
    double gamma, coef0;
    int64_t depth;
    double weight_std, bias_std;
};

ntkit::KernelId kernel_id(int64_t k) {
    if (k < 0 || k >= int64_t(ntkit::K_NUM_KERNELS))
        throw std::invalid_argument("invalid kernel id " + std::to_string(k) + "; valid ids 0.." +
                                    std::to_string(int(ntkit::K_NUM_KERNELS) - 1) + " (" +
                                    ntkit::kernel_names_joined() + ")");
    return static_cast<ntkit::KernelId>(k);
}

ntkit::KernelParams kernel_params(const KernelAttrs& a) {
    ntkit::KernelParams p;
    p.lengthscale = a.lengthscale;
    p.degree = a.degree;
    p.gamma = a.gamma;
    p.coef0 = a.coef0;
    p.depth = a.depth;
    p.weight_std = a.weight_std;
    p.bias_std = a.bias_std;
    ntkit::validate_params(kernel_id(a.kernel), p);
    return p;
}

// 4 = float32, 8 = float64; all operands and the result must agree.
int common_dtype(std::initializer_list<std::pair<const ffi::AnyBuffer*, const char*>> ops, ffi::DataType out) {
    int size = 0;
    for (const auto& op : ops) {
        const ffi::DataType t = op.first->element_type();
        if (t != ffi::DataType::F32 && t != ffi::DataType::F64)
            throw std::invalid_argument(std::string(op.second) + " must be float32 or float64");
        const int s = t == ffi::DataType::F32 ? 4 : 8;
        if (size != 0 && s != size) throw std::invalid_argument("all operands must share one dtype");
        size = s;
    }
    if (out != (size == 4 ? ffi::DataType::F32 : ffi::DataType::F64))
        throw std::invalid_argument("the result dtype must equal the operands' dtype");
    return size;
}

// Where a core call runs: the CPU, or a CUDA stream with XLA's scratch allocator.
struct Place {
    bool cuda = false;
    void* stream = nullptr;
#ifdef NTKIT_WITH_CUDA
    ntkit::cuda::Scratch* scratch = nullptr;
#endif
};

#ifdef NTKIT_WITH_CUDA
class FfiScratch final : public ntkit::cuda::Scratch {
   public:
    explicit FfiScratch(ffi::ScratchAllocator& a) : a_(a) {}
    void* allocate(std::size_t bytes) override {
        // XLA accepts alignments up to tsl::Allocator::kAllocatorAlignment (64 bytes); its BFC
        // allocator hands out 256-byte aligned chunks anyway.
        std::optional<void*> p = a_.Allocate(bytes, 64);
        return p.has_value() ? *p : nullptr;
    }

   private:
    ffi::ScratchAllocator& a_;
};
#endif

// ---------------------------------------------------------------- gram
template <class T>
void gram_run(const Place& pl, const ffi::AnyBuffer& X, const ffi::AnyBuffer& Z, const ffi::AnyBuffer& out,
              ntkit::KernelId kid, const ntkit::KernelParams& p, bool sym) {
    const Batch bt(out.dimensions(), 2);
    const auto sx = bt.strides(X.dimensions(), 2, "X"), sz = bt.strides(Z.dimensions(), 2, "Z");
    const int64_t n = core(X.dimensions(), 2), d = core(X.dimensions(), 1);
    const int64_t m = core(Z.dimensions(), 2);
    if (core(Z.dimensions(), 1) != d)
        throw std::invalid_argument("X has " + std::to_string(d) + " features but Z has " +
                                    std::to_string(core(Z.dimensions(), 1)));
    if (sym && m != n) throw std::invalid_argument("symmetric gram needs Z = X");
    if (core(out.dimensions(), 2) != n || core(out.dimensions(), 1) != m)
        throw std::invalid_argument("result has shape " + shape_str(out.dimensions()) + "; expected (..., " +
                                    std::to_string(n) + ", " + std::to_string(m) + ")");
    if (bt.count() == 0 || n == 0 || m == 0) return;
    const T* xp = static_cast<const T*>(X.untyped_data());
    const T* zp = static_cast<const T*>(Z.untyped_data());
    T* op = static_cast<T*>(out.untyped_data());
    for (int64_t b = 0; b < bt.count(); ++b) {
        const T* xb = xp + bt.offset(b, sx);
        const T* zb = sym ? xb : zp + bt.offset(b, sz);
        T* ob = op + b * n * m;
        if (!pl.cuda) {
            ntkit::cpu::gram<T>(xb, n, zb, m, d, sym, kid, p, ob);
        } else {
#ifdef NTKIT_WITH_CUDA
            ntkit::cuda::gram_device<T>(xb, n, zb, m, d, sym, kid, p, ob, pl.stream, pl.scratch);
#endif
        }
    }
}

void gram_any(const Place& pl, ffi::AnyBuffer X, ffi::AnyBuffer Z, ffi::Result<ffi::AnyBuffer> out,
              const KernelAttrs& ka, bool sym) {
    const ntkit::KernelParams p = kernel_params(ka);
    const ntkit::KernelId kid = kernel_id(ka.kernel);
    if (common_dtype({{&X, "X"}, {&Z, "Z"}}, out->element_type()) == 4)
        gram_run<float>(pl, X, Z, *out, kid, p, sym);
    else
        gram_run<double>(pl, X, Z, *out, kid, p, sym);
}

// ---------------------------------------------------------------- kernel_matvec
template <class T>
void matvec_run(const Place& pl, const ffi::AnyBuffer& X, const ffi::AnyBuffer& Z, const ffi::AnyBuffer& V,
                const ffi::AnyBuffer& out, ntkit::KernelId kid, const ntkit::KernelParams& p, bool sym) {
    const Batch bt(out.dimensions(), 2);
    const auto sx = bt.strides(X.dimensions(), 2, "X"), sz = bt.strides(Z.dimensions(), 2, "Z");
    const auto sv = bt.strides(V.dimensions(), 2, "v");
    const int64_t n = core(X.dimensions(), 2), d = core(X.dimensions(), 1);
    const int64_t m = core(Z.dimensions(), 2), t = core(V.dimensions(), 1);
    if (core(Z.dimensions(), 1) != d)
        throw std::invalid_argument("X has " + std::to_string(d) + " features but Z has " +
                                    std::to_string(core(Z.dimensions(), 1)));
    if (sym && m != n) throw std::invalid_argument("symmetric kernel_matvec needs Z = X");
    if (core(V.dimensions(), 2) != m)
        throw std::invalid_argument("v has " + std::to_string(core(V.dimensions(), 2)) + " rows but Z has " +
                                    std::to_string(m));
    if (core(out.dimensions(), 2) != n || core(out.dimensions(), 1) != t)
        throw std::invalid_argument("result has shape " + shape_str(out.dimensions()) + "; expected (..., " +
                                    std::to_string(n) + ", " + std::to_string(t) + ")");
    if (bt.count() == 0 || n == 0 || t == 0) return;
    const T* xp = static_cast<const T*>(X.untyped_data());
    const T* zp = static_cast<const T*>(Z.untyped_data());
    const T* vp = static_cast<const T*>(V.untyped_data());
    T* op = static_cast<T*>(out.untyped_data());
    for (int64_t b = 0; b < bt.count(); ++b) {
        const T* xb = xp + bt.offset(b, sx);
        const T* zb = sym ? xb : zp + bt.offset(b, sz);
        const T* vb = vp + bt.offset(b, sv);
        T* ob = op + b * n * t;
        if (!pl.cuda) {
            ntkit::cpu::kernel_matvec<T>(xb, n, zb, m, d, vb, t, kid, p, ob, 0, 0, sym);
        } else {
#ifdef NTKIT_WITH_CUDA
            ntkit::cuda::kernel_matvec_device<T>(xb, n, zb, m, d, vb, t, kid, p, ob, sym, pl.stream, pl.scratch);
#endif
        }
    }
}

void matvec_any(const Place& pl, ffi::AnyBuffer X, ffi::AnyBuffer Z, ffi::AnyBuffer V,
                ffi::Result<ffi::AnyBuffer> out, const KernelAttrs& ka, bool sym) {
    const ntkit::KernelParams p = kernel_params(ka);
    const ntkit::KernelId kid = kernel_id(ka.kernel);
    if (common_dtype({{&X, "X"}, {&Z, "Z"}, {&V, "v"}}, out->element_type()) == 4)
        matvec_run<float>(pl, X, Z, V, *out, kid, p, sym);
    else
        matvec_run<double>(pl, X, Z, V, *out, kid, p, sym);
}

// ---------------------------------------------------------------- batched_gram
template <class T>
void batched_run(const Place& pl, const ffi::AnyBuffer& A, const ffi::AnyBuffer& B, const ffi::AnyBuffer& out,
                 bool reduce_sum, bool sym) {
    const int out_core = reduce_sum ? 2 : 3;
    const Batch bt(out.dimensions(), out_core);
    const auto sa = bt.strides(A.dimensions(), 3, "A"), sb = bt.strides(B.dimensions(), 3, "B");
    const int64_t b = core(A.dimensions(), 3), n = core(A.dimensions(), 2), p = core(A.dimensions(), 1);
    const int64_t m = core(B.dimensions(), 2);
    if (core(B.dimensions(), 3) != b || core(B.dimensions(), 1) != p)
        throw std::invalid_argument("A has shape " + shape_str(A.dimensions()) + " but B has shape " +
                                    shape_str(B.dimensions()) + " (batch sizes and features must match)");
    if (sym && m != n) throw std::invalid_argument("symmetric batched_gram needs B = A");
    const bool ok = reduce_sum ? (core(out.dimensions(), 2) == n && core(out.dimensions(), 1) == m)
                               : (core(out.dimensions(), 3) == b && core(out.dimensions(), 2) == n &&
                                  core(out.dimensions(), 1) == m);
    if (!ok) throw std::invalid_argument("result has shape " + shape_str(out.dimensions()) + " for A " +
                                         shape_str(A.dimensions()) + " and B " + shape_str(B.dimensions()));
    const int64_t out_size = (reduce_sum ? 1 : b) * n * m;
    if (bt.count() == 0 || out_size == 0) return;
    const T* ap = static_cast<const T*>(A.untyped_data());
    const T* bp = static_cast<const T*>(B.untyped_data());
    T* op = static_cast<T*>(out.untyped_data());
    for (int64_t e = 0; e < bt.count(); ++e) {
        const T* ab = ap + bt.offset(e, sa);
        const T* bb = sym ? ab : bp + bt.offset(e, sb);
        T* ob = op + e * out_size;
        if (!pl.cuda) {
            ntkit::cpu::batched_gram<T>(ab, b, n, bb, m, p, sym, reduce_sum, ob);
        } else {
#ifdef NTKIT_WITH_CUDA
            ntkit::cuda::batched_gram_device<T>(ab, b, n, bb, m, p, sym, reduce_sum, ob, pl.stream, pl.scratch);
#endif
        }
    }
}

void batched_any(const Place& pl, ffi::AnyBuffer A, ffi::AnyBuffer B, ffi::Result<ffi::AnyBuffer> out,
                 bool reduce_sum, bool sym) {
    for (const auto* buf : {&A, &B})
        if (buf->dimensions().size() < 3) throw std::invalid_argument("A and B must have 3 dimensions (b, n, p)");
    if (common_dtype({{&A, "A"}, {&B, "B"}}, out->element_type()) == 4)
        batched_run<float>(pl, A, B, *out, reduce_sum, sym);
    else
        batched_run<double>(pl, A, B, *out, reduce_sum, sym);
}

void check_rank2(const ffi::AnyBuffer& a, const char* name) {
    if (a.dimensions().size() < 2)
        throw std::invalid_argument(std::string(name) + " must have 2 dimensions, got shape " +
                                    shape_str(a.dimensions()));
}

// ---------------------------------------------------------------- handlers
#define NTKIT_KERNEL_ATTR_PARAMS                                                                      \
    int64_t kernel, double lengthscale, int64_t degree, double gamma, double coef0, int64_t depth, \
        double weight_std, double bias_std
#define NTKIT_KERNEL_ATTRS_VALUE \
    KernelAttrs { kernel, lengthscale, degree, gamma, coef0, depth, weight_std, bias_std }
#define NTKIT_BIND_KERNEL_ATTRS                                                                    \
    .Attr<int64_t>("kernel").Attr<double>("lengthscale").Attr<int64_t>("degree").Attr<double>("gamma") \
        .Attr<double>("coef0").Attr<int64_t>("depth").Attr<double>("weight_std").Attr<double>("bias_std")

ffi::Error GramCpu(ffi::AnyBuffer X, ffi::AnyBuffer Z, ffi::Result<ffi::AnyBuffer> out, NTKIT_KERNEL_ATTR_PARAMS,
                   bool symmetric) {
    return guarded([&] {
        check_rank2(X, "X");
        check_rank2(Z, "Z");
        gram_any(Place{}, X, Z, out, NTKIT_KERNEL_ATTRS_VALUE, symmetric);
    });
}

ffi::Error MatvecCpu(ffi::AnyBuffer X, ffi::AnyBuffer Z, ffi::AnyBuffer V, ffi::Result<ffi::AnyBuffer> out,
                     NTKIT_KERNEL_ATTR_PARAMS, bool symmetric) {
    return guarded([&] {
        check_rank2(X, "X");
        check_rank2(Z, "Z");
        check_rank2(V, "v");
        matvec_any(Place{}, X, Z, V, out, NTKIT_KERNEL_ATTRS_VALUE, symmetric);
    });
}

ffi::Error BatchedCpu(ffi::AnyBuffer A, ffi::AnyBuffer B, ffi::Result<ffi::AnyBuffer> out, bool reduce_sum,
                      bool symmetric) {
    return guarded([&] { batched_any(Place{}, A, B, out, reduce_sum, symmetric); });
}

#ifdef NTKIT_WITH_CUDA
Place cuda_place(void* stream, FfiScratch* scratch) {
    Place pl;
    pl.cuda = true;
    pl.stream = stream;
    pl.scratch = scratch;
    return pl;
}

ffi::Error GramCuda(void* stream, ffi::ScratchAllocator scratch, ffi::AnyBuffer X, ffi::AnyBuffer Z,
                    ffi::Result<ffi::AnyBuffer> out, NTKIT_KERNEL_ATTR_PARAMS, bool symmetric) {
    FfiScratch fs(scratch);
    return guarded([&] {
        check_rank2(X, "X");
        check_rank2(Z, "Z");
        gram_any(cuda_place(stream, &fs), X, Z, out, NTKIT_KERNEL_ATTRS_VALUE, symmetric);
    });
}

ffi::Error MatvecCuda(void* stream, ffi::ScratchAllocator scratch, ffi::AnyBuffer X, ffi::AnyBuffer Z,
                      ffi::AnyBuffer V, ffi::Result<ffi::AnyBuffer> out, NTKIT_KERNEL_ATTR_PARAMS, bool symmetric) {
    FfiScratch fs(scratch);
    return guarded([&] {
        check_rank2(X, "X");
        check_rank2(Z, "Z");
        check_rank2(V, "v");
        matvec_any(cuda_place(stream, &fs), X, Z, V, out, NTKIT_KERNEL_ATTRS_VALUE, symmetric);
    });
}

ffi::Error BatchedCuda(void* stream, ffi::ScratchAllocator scratch, ffi::AnyBuffer A, ffi::AnyBuffer B,
                       ffi::Result<ffi::AnyBuffer> out, bool reduce_sum, bool symmetric) {
    FfiScratch fs(scratch);
    return guarded([&] { batched_any(cuda_place(stream, &fs), A, B, out, reduce_sum, symmetric); });
}
#endif

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(NtkitGramCpu, GramCpu,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() NTKIT_BIND_KERNEL_ATTRS.Attr<bool>("symmetric"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(NtkitMatvecCpu, MatvecCpu,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() NTKIT_BIND_KERNEL_ATTRS.Attr<bool>("symmetric"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(NtkitBatchedCpu, BatchedCpu,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("reduce_sum")
                                  .Attr<bool>("symmetric"));

#ifdef NTKIT_WITH_CUDA
XLA_FFI_DEFINE_HANDLER_SYMBOL(NtkitGramCuda, GramCuda,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<void*>>()
                                  .Ctx<ffi::ScratchAllocator>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() NTKIT_BIND_KERNEL_ATTRS.Attr<bool>("symmetric"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(NtkitMatvecCuda, MatvecCuda,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<void*>>()
                                  .Ctx<ffi::ScratchAllocator>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() NTKIT_BIND_KERNEL_ATTRS.Attr<bool>("symmetric"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(NtkitBatchedCuda, BatchedCuda,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<void*>>()
                                  .Ctx<ffi::ScratchAllocator>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("reduce_sum")
                                  .Attr<bool>("symmetric"));
#endif

namespace ntkit {
namespace ffi_targets {

std::vector<Target> targets() {
    std::vector<Target> t = {
        {"cpu", "ntkit_gram", reinterpret_cast<void*>(&NtkitGramCpu)},
        {"cpu", "ntkit_kernel_matvec", reinterpret_cast<void*>(&NtkitMatvecCpu)},
        {"cpu", "ntkit_batched_gram", reinterpret_cast<void*>(&NtkitBatchedCpu)},
    };
#ifdef NTKIT_WITH_CUDA
    t.push_back({"CUDA", "ntkit_gram", reinterpret_cast<void*>(&NtkitGramCuda)});
    t.push_back({"CUDA", "ntkit_kernel_matvec", reinterpret_cast<void*>(&NtkitMatvecCuda)});
    t.push_back({"CUDA", "ntkit_batched_gram", reinterpret_cast<void*>(&NtkitBatchedCuda)});
#endif
    return t;
}

}  // namespace ffi_targets
}  // namespace ntkit
