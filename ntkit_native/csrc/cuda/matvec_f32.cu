// kernel_matvec_device<float> (see matvec_impl.cuh).
#include "matvec_impl.cuh"

NTKIT_MATVEC_INSTANTIATE(float)
