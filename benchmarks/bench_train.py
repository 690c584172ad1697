"""Training-step benchmark: FAN (the default ``fastlmk train`` model, B=16 at 128 px, 68 landmarks) with
fastlmk's fused heatmap loss vs the same model with Gaussian targets rendered in NumPy per sample (the
common data-loader practice) and the floor (the same step with the targets already in memory), plus the
targets + loss alone, measured in one run.

    python benchmarks/bench_train.py [--device auto|cpu|cuda] [--markdown PATH]
"""

from fastlmk import bench

if __name__ == "__main__":
    bench.script("train", __doc__)
