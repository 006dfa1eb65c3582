// kernel_matvec_device<double> (see matvec_impl.cuh).
#include "matvec_impl.cuh"

NTKIT_MATVEC_INSTANTIATE(double)
