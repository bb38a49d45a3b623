// Helpers for the Python bindings of emulated kernels (tests only).
//
// Include this first in a binding source. emu::Ptr<T> is a kernel pointer
// argument that pybind11 fills from a torch.Tensor (or None, or an int
// address): it checks that the tensor is on the CPU, that its dtype matches T
// (float -> torch.float32, __half -> torch.float16, __nv_bfloat16 ->
// torch.bfloat16, int -> torch.int32, int64_t -> torch.int64, ...) and that
// its data is aligned for T (float4 needs 16 bytes), then converts to T*.
// No torch header is needed, which keeps a binding's compile time short.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda_emulation.h"

namespace emu {

template <class T>
struct Ptr {
  T* ptr = nullptr;
  operator T*() const { return ptr; }
  T* get() const { return ptr; }
};

namespace detail {
// torch's name of the dtype that holds T, or nullptr to accept any dtype.
template <class T>
constexpr const char* torch_dtype_name() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, float> || std::is_same_v<U, float2> || std::is_same_v<U, float4>) return "torch.float32";
  if constexpr (std::is_same_v<U, double>) return "torch.float64";
  if constexpr (std::is_same_v<U, __half> || std::is_same_v<U, __half2>) return "torch.float16";
  if constexpr (std::is_same_v<U, __nv_bfloat16> || std::is_same_v<U, __nv_bfloat162>) return "torch.bfloat16";
  if constexpr (std::is_same_v<U, int32_t>) return "torch.int32";
  if constexpr (std::is_same_v<U, uint32_t>) return "torch.uint32";
  if constexpr (std::is_same_v<U, int64_t> || std::is_same_v<U, long long>) return "torch.int64";
  if constexpr (std::is_same_v<U, uint64_t> || std::is_same_v<U, unsigned long long>) return "torch.uint64";
  if constexpr (std::is_same_v<U, int16_t>) return "torch.int16";
  if constexpr (std::is_same_v<U, int8_t>) return "torch.int8";
  if constexpr (std::is_same_v<U, uint8_t>) return "torch.uint8";
  if constexpr (std::is_same_v<U, bool>) return "torch.bool";
  return nullptr;  // void, char, int4/uint4 (raw 128-bit words), structs
}

template <class T>
constexpr size_t alignment_of() {
  if constexpr (std::is_void_v<std::remove_cv_t<T>>) {
    return 1;
  } else {
    return alignof(T);
  }
}
}  // namespace detail
}  // namespace emu

namespace pybind11::detail {

template <class T>
struct type_caster<emu::Ptr<T>> {
  PYBIND11_TYPE_CASTER(emu::Ptr<T>, const_name("torch.Tensor"));

  bool load(handle src, bool) {
    if (src.is_none()) {
      value.ptr = nullptr;
      return true;
    }
    uintptr_t address = 0;
    if (PyLong_Check(src.ptr())) {
      address = src.cast<uintptr_t>();
    } else if (hasattr(src, "data_ptr")) {
      const std::string device = str(src.attr("device").attr("type"));
      if (device != "cpu")
        throw value_error("emulated kernels read host memory: expected a cpu tensor, got one on " + device);
      constexpr const char* want = emu::detail::torch_dtype_name<T>();
      if (want) {
        const std::string got = str(src.attr("dtype"));
        if (got != want) throw type_error(std::string("expected a ") + want + " tensor for this pointer, got " + got);
      }
      address = src.attr("data_ptr")().template cast<uintptr_t>();
    } else {
      return false;
    }
    constexpr size_t align = emu::detail::alignment_of<T>();
    if (address % align)
      throw value_error("tensor data at 0x" + std::to_string(address) + " is not aligned to " + std::to_string(align) +
                        " bytes, as this pointer type needs");
    value.ptr = reinterpret_cast<T*>(address);
    return true;
  }

  static handle cast(const emu::Ptr<T>& p, return_value_policy, handle) {
    return PyLong_FromSize_t(reinterpret_cast<uintptr_t>(p.ptr));
  }
};

}  // namespace pybind11::detail

namespace emu {
// Exposes emu.last_launch_stats() and emu.set_num_threads() on a module.
inline void def_runtime_helpers(pybind11::module_& m) {
  m.def("last_launch_stats", [] {
    const LaunchStats s = last_launch_stats();
    pybind11::dict d;
    d["blocks"] = s.blocks;
    d["threads"] = s.threads;
    d["switches"] = s.switches;
    d["barriers"] = s.barriers;
    d["warp_collectives"] = s.warp_collectives;
    return d;
  }, "Figures of the last kernel launch of the calling thread.");
  m.def("set_num_threads", &set_num_threads, "OS threads that run the blocks of a launch.");
  m.def("num_threads", &num_threads);
}
}  // namespace emu
