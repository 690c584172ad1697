"""Triton kernels (installed as ``fastlmk.kernels``), one module per op family. Imported lazily, only when a
CUDA tensor arrives or the Triton backend is forced (TRITON_INTERPRET=1 runs them on the CPU)."""
