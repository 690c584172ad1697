// Python binding of a kernel that takes one argument struct: Python passes one keyword per field (a buffer
// as a tensor, its address, or None for none) and every field is named once, in the kernel's field list. A
// missing or unknown keyword is a TypeError; the GIL is released while the kernel runs.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace fastlmk {
namespace bind {

namespace py = pybind11;

template <class Args>
struct Field {
  const char* name;
  std::function<void(Args&, py::handle)> set;
};

// The field `name` of Args (or of a struct Args extends): a pointer from an address, an array from a
// sequence of its length, anything else by pybind11's conversion.
template <class Args, class Base, class T>
Field<Args> field(const char* name, T Base::*member) {
  static_assert(std::is_base_of_v<Base, Args>, "a field of Args or of its base");
  return {name, [name, member](Args& args, py::handle value) {
            Base& a = args;
            if constexpr (std::is_pointer_v<T>) {
              // an address, None (no buffer), a C-contiguous buffer (a NumPy array; writable for an output
              // field) or an object with data_ptr() (a contiguous torch.Tensor)
              uintptr_t address = 0;
              if (py::isinstance<py::int_>(value)) {
                address = value.cast<uintptr_t>();
              } else if (PyObject_CheckBuffer(value.ptr())) {
                constexpr int flags =
                    PyBUF_C_CONTIGUOUS | (std::is_const_v<std::remove_pointer_t<T>> ? 0 : PyBUF_WRITABLE);
                Py_buffer view;
                if (PyObject_GetBuffer(value.ptr(), &view, flags) != 0) throw py::error_already_set();
                address = reinterpret_cast<uintptr_t>(view.buf);
                PyBuffer_Release(&view);  // the caller's keyword arguments keep the array alive
              } else if (!value.is_none()) {
                address = value.attr("data_ptr")().cast<uintptr_t>();
              }
              a.*member = reinterpret_cast<T>(address);
            } else if constexpr (std::is_array_v<T>) {
              const auto seq = value.cast<py::sequence>();
              if (seq.size() != std::extent_v<T>)
                throw py::value_error(std::string(name) + " must hold " + std::to_string(std::extent_v<T>) +
                                      " values");
              for (size_t i = 0; i < std::extent_v<T>; ++i) (a.*member)[i] = seq[i].cast<std::remove_extent_t<T>>();
            } else {
              a.*member = value.cast<T>();
            }
          }};
}

// m.<name>(**fields) fills an Args from the keywords and runs fn on it. The keywords are matched by one pass
// over them (a hash lookup of each name, read without a copy), every field exactly once.
template <class Args, class R>
void def_kernel(py::module_& m, const char* name, R (*fn)(const Args&), std::vector<Field<Args>> fields,
                const char* doc = "") {
  std::unordered_map<std::string_view, size_t> index;
  for (size_t i = 0; i < fields.size(); ++i) index.emplace(fields[i].name, i);
  m.def(
      name,
      [name, fn, fields = std::move(fields), index = std::move(index)](py::kwargs kwargs) -> R {
        Args a{};
        std::vector<bool> seen(fields.size(), false);
        for (const auto& [key, value] : kwargs) {
          Py_ssize_t size = 0;
          const char* text = PyUnicode_AsUTF8AndSize(key.ptr(), &size);
          const auto it = text ? index.find(std::string_view(text, static_cast<size_t>(size))) : index.end();
          if (it == index.end()) throw py::type_error(std::string(name) + "(): unknown field '" + py::str(key).cast<std::string>() + "'");
          fields[it->second].set(a, value);
          seen[it->second] = true;
        }
        for (size_t i = 0; i < fields.size(); ++i)
          if (!seen[i]) throw py::type_error(std::string(name) + "(): missing field '" + fields[i].name + "'");
        py::gil_scoped_release release;
        return fn(a);
      },
      doc);
}

// The fields of a and then b.
template <class Args>
std::vector<Field<Args>> operator+(std::vector<Field<Args>> a, const std::vector<Field<Args>>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// {name: code} of an enum whose codes are 0..N-1, from its names in code order.
template <size_t N>
py::dict codes(const char* const (&names)[N]) {
  py::dict d;
  for (size_t i = 0; i < N; ++i) d[names[i]] = static_cast<int>(i);
  return d;
}

}  // namespace bind
}  // namespace fastlmk

// The entry for field `name` of struct Args in a def_kernel list.
#define FASTLMK_FIELD(Args, name) ::fastlmk::bind::field<Args>(#name, &Args::name)
