"""Splat-family benchmark (the PIFA visualization splat, forward and forward + backward) at full size:
fastlmk vs the pure-PyTorch scatter (index_add over the window candidates, autograd backward) and the
physical floor (writing the image and the gradients once), measured in one run.

    python benchmarks/bench_splat.py [--device auto|cpu|cuda] [--markdown PATH]
"""

from fastlmk import bench

if __name__ == "__main__":
    bench.script("splat", __doc__)
