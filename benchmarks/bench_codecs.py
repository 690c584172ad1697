"""Codec benchmark: fastlmk.codecs against mmpose's codecs (the real package when importable, else the NumPy
transcription of its loops), per sample as a data loader calls them and per batch, and the physical floor,
measured in one run.

    python benchmarks/bench_codecs.py [--device auto|cpu|cuda] [--markdown PATH]
"""

from fastlmk import bench

if __name__ == "__main__":
    bench.script("codecs", __doc__)
