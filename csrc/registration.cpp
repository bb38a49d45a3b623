// The `aigc` operator library. Each op's source file adds its schema with
// TORCH_LIBRARY_FRAGMENT(aigc, m) and its kernels with TORCH_LIBRARY_IMPL, so
// an op lives in one file; this file owns the library itself and the Python
// module that loading `aigc_sdk._C` needs.
#include <Python.h>
#include <torch/library.h>

namespace {
std::string build_info() {
#ifdef AIGC_WITH_CUDA
  return "cpu+cuda";
#else
  return "cpu";
#endif
}
}  // namespace

TORCH_LIBRARY(aigc, m) {
  // Reports which kernels this binary was compiled with, so `aigc doctor`
  // can tell a CPU-only build from a CUDA one without a GPU to try.
  m.def("build_info() -> str", &build_info);
}

// Importing aigc_sdk._C runs the static registrations above; the module
// itself has no Python functions (ops are reached through torch.ops.aigc).
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
