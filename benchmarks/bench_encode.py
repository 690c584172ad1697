"""Encoding-family benchmark (render_gaussian, fused MSE heatmap loss) at full size: fastlmk vs pure PyTorch,
a numpy dataset-pipeline loop and the physical floor, measured in one run.

    python benchmarks/bench_encode.py [--device auto|cpu|cuda] [--markdown PATH]
"""

from fastlmk import bench

if __name__ == "__main__":
    bench.script("encode", __doc__)
