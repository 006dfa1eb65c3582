// The XLA FFI handlers of ntkit_native (defined in csrc/bindings/xla_ffi.cpp,
// compiled only when jaxlib's FFI headers were found at build time:
// NTKIT_WITH_FFI). Framework-free: module.cpp wraps the pointers in capsules.
#pragma once
#include <vector>

namespace ntkit {
namespace ffi_targets {

struct Target {
    const char* platform;  // "cpu" or "CUDA" (jax.ffi.register_ffi_target's platform names)
    const char* name;      // custom-call target name, e.g. "ntkit_gram"
    void* handler;         // XLA_FFI_Handler* (XLA_FFI_Error* (*)(XLA_FFI_CallFrame*))
};

std::vector<Target> targets();

}  // namespace ffi_targets
}  // namespace ntkit
