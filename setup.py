"""Build of fastlmk's native extensions (metadata lives in pyproject.toml).

* ``fastlmk._C``: C++17 + OpenMP CPU kernels, always built. The AVX2 variants are compiled in the same
  module with a target pragma and chosen at run time, so one wheel runs on any x86-64 CPU.
* ``fastlmk._cuda``: CUDA kernels, built when ``nvcc`` is found (``FASTLMK_CUDA=1`` requires it,
  ``FASTLMK_CUDA=0`` skips it), for sm_80 and sm_90 plus PTX, with the CUDA runtime linked statically.
* ``FASTLMK_CXXFLAGS``: extra compile and link flags for ``fastlmk._C`` (sanitizer and coverage builds).

Neither extension links against torch: they are plain pybind11 modules taking raw pointers, so torch is
not a build requirement (see docs/layout.md, Build).
"""

import os
import shutil
import subprocess
from glob import glob

import pybind11
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CXX_FLAGS = ["-O3", "-std=c++17", "-fopenmp", "-fno-trapping-math", "-ffp-contract=off", "-fvisibility=hidden"]
# FASTLMK_CXXFLAGS: flags added last to fastlmk._C's compile and link lines (tests/README.md: an ASan or a
# --coverage build)
EXTRA_FLAGS = os.environ.get("FASTLMK_CXXFLAGS", "").split()
NVCC_FLAGS = [
    "-O3", "-std=c++17", "-Xcompiler", "-fPIC,-fvisibility=hidden",
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_90,code=sm_90",
    "-gencode=arch=compute_90,code=compute_90",
]


def find_cuda_home():
    """CUDA toolkit root, or None when nvcc is absent or FASTLMK_CUDA=0."""
    flag = os.environ.get("FASTLMK_CUDA", "")
    if flag == "0":
        return None
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    nvcc = os.path.join(home, "bin", "nvcc") if home else shutil.which("nvcc")
    if not nvcc or not os.path.exists(nvcc):
        if flag == "1":
            raise RuntimeError("FASTLMK_CUDA=1 but nvcc was not found (set CUDA_HOME)")
        return None
    if not home:  # nvcc may be a wrapper script on PATH: ask it where it lives
        out = subprocess.run([nvcc, "--dryrun", "-c", "probe.cu"], capture_output=True, text=True).stderr
        tops = [line.split("TOP=", 1)[1] for line in out.splitlines() if "TOP=" in line]
        top = tops[0].strip() if tops else os.path.join(os.path.dirname(os.path.realpath(nvcc)), "..")
        home = os.path.normpath(top)
    return home


class BuildExt(build_ext):
    """build_ext that hands ``.cu`` sources to nvcc."""

    def build_extensions(self):
        self.compiler.src_extensions.append(".cu")
        default_compile = self.compiler._compile
        cuda_home = find_cuda_home()

        def compile_one(obj, src, ext, cc_args, extra_postargs, pp_opts):
            if not src.endswith(".cu"):
                return default_compile(obj, src, ext, cc_args, extra_postargs, pp_opts)
            nvcc = os.path.join(cuda_home, "bin", "nvcc")
            self.spawn([nvcc, "-c", src, "-o", obj, *pp_opts, *NVCC_FLAGS])

        self.compiler._compile = compile_one
        super().build_extensions()


def extensions():
    includes = ["csrc", pybind11.get_include()]
    exts = [
        Extension(
            "fastlmk._C",
            sources=["csrc/bindings.cpp", "csrc/isa.cpp",
                     *sorted(glob("csrc/codecs/*.cpp") + glob("csrc/encode/*.cpp") + glob("csrc/decode/*.cpp") + glob("csrc/splat/*.cpp")
                            + glob("csrc/xnor/*.cpp"))],
            include_dirs=includes,
            depends=sorted(glob("csrc/**/*.h", recursive=True)),  # a kernel header edit rebuilds the module
            extra_compile_args=CXX_FLAGS + EXTRA_FLAGS,
            extra_link_args=["-fopenmp", *EXTRA_FLAGS],
            language="c++",
        )
    ]
    cuda_home = find_cuda_home()
    if cuda_home:
        exts.append(
            Extension(
                "fastlmk._cuda",
                # csrc/cuda: what the families share (bindings, device queries); csrc/<family>/*_cuda.cu: kernels
                sources=sorted(glob("csrc/cuda/*.cpp") + glob("csrc/cuda/*.cu") + glob("csrc/*/*_cuda.cu")),
                depends=sorted(glob("csrc/**/*.h", recursive=True) + glob("csrc/**/*.cuh", recursive=True)),
                include_dirs=[*includes, os.path.join(cuda_home, "include")],
                library_dirs=[os.path.join(cuda_home, "lib64")],
                libraries=["cudart_static", "dl", "rt", "pthread"],
                extra_compile_args=["-O3", "-std=c++17", "-fvisibility=hidden"],
                language="c++",
            )
        )
    return exts


setup(
    packages=["fastlmk", "fastlmk.bench", "fastlmk.data", "fastlmk.geometry", "fastlmk.nn", "fastlmk.ops",
              "fastlmk.reference", "fastlmk.kernels", "fastlmk.models"],
    package_dir={"fastlmk": "fastlmk", "fastlmk.kernels": "kernels", "fastlmk.models": "models"},
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExt},
)
