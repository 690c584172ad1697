"""Decoding-family benchmark (decode quarter / dark / topk, soft_argmax forward + backward) at full size:
fastlmk vs pure PyTorch (argmax + gather, whole-map-blur DARK, torch.topk, softmax expectation) and the
physical floor (reading the maps once), measured in one run.

    python benchmarks/bench_decode.py [--device auto|cpu|cuda] [--markdown PATH]
"""

from fastlmk import bench

if __name__ == "__main__":
    bench.script("decode", __doc__)
