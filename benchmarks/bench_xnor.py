"""XNOR-family benchmark at full size: binary_conv2d (packed input; float and fused BN + sign packed output)
vs float32 and bfloat16 F.conv2d (TF32 off on a GPU) and the pure-PyTorch XNOR emulation, pack_bits vs the
PyTorch packing, binary_linear vs F.linear, and a binarized hourglass block vs its float version, with the
physical floor (writing the output once), measured in one run.

    python benchmarks/bench_xnor.py [--device auto|cpu|cuda] [--markdown PATH]
"""

from fastlmk import bench

if __name__ == "__main__":
    bench.script("xnor", __doc__)
