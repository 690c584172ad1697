"""Hand-planted single bugs, one at a time, against the tests (tests/README.md, "Mutation pass").

    python tests/mutation.py DIR [--only ID ...]

Copies the working tree to DIR (tests/native_variant.sh plain: fastlmk._C built in place, no CUDA
extension), then for each mutant replaces one exact piece of source text, rebuilds fastlmk._C when the
mutant is in csrc/ (with ccache when it is installed, so only the changed file compiles), runs the tests
named for it (TRITON_INTERPRET=1, stopping at the first failure) and restores the file. A mutant is caught
when those tests fail. Prints a markdown table and exits non-zero if a mutant survived. CUDA sources
(csrc/*/*.cu) are not mutated: they only run on a GPU (benchmarks/gpu_acceptance.sh).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEC, ENC, REACH, FUZZ = "tests/test_decode.py", "tests/test_encode.py", "tests/test_reach.py", "tests/test_fuzz.py"
XNOR, SPLAT, MODELS = "tests/test_xnor.py", "tests/test_splat.py", "tests/test_models.py"
CODECS = "tests/test_codecs.py"
TRITON = ["-k", "triton"]
CPU = ["-k", "cpu"]

# (id, file, text, replacement, pytest arguments)
MUTANTS = [
    # Triton decode
    ("tri-tiebreak-lane", "kernels/decode.py", "up1 = mask & _better(v, idx, v1, i1)", "up1 = mask & (v > v1)",
     [DEC, REACH, *TRITON]),
    ("tri-first-max-lanes", "kernels/decode.py", "return m, tl.min(tl.where(v == m, i, _BIG), 0)",
     "return m, tl.max(tl.where(v == m, i, -1), 0)", [DEC, REACH, *TRITON]),
    ("tri-wsm-demote", "kernels/decode.py", "v2 = tl.where(up1, v1, tl.where(up2, v, v2))",
     "v2 = tl.where(up1, v2, tl.where(up2, v, v2))", [DEC, REACH, *TRITON]),
    ("tri-softmax-rescale", "kernels/decode.py", "s = tl.where(up, s * e + 1, tl.where(take, s + e, s))",
     "s = tl.where(up, s + 1, tl.where(take, s + e, s))", [DEC, REACH, *TRITON]),
    ("tri-softmax-lanes", "kernels/decode.py", "r = tl.where(m == mm, 1.0, tl.exp(m - mm))",
     "r = tl.where(m == mm, 1.0, 1.0)", [DEC, REACH, *TRITON]),
    ("tri-relu-nan-centre", "kernels/decode.py", "ok = total != 0", "ok = total > 0",
     [DEC, "-k", "nan_channel and triton"]),
    ("cpp-relu-backward-zero-stat", "csrc/decode/decode_kernels.h", "g_stat_ok = ok ? g_stat : S(0);",
     "g_stat_ok = g_stat;", [DEC, "-k", "degenerate_stat and cpu"]),
    # (not mutated: _better -> "cv > wv" in the merge loop; chunks arrive in index order, so a tied candidate
    # never precedes an entry already in the set, and an empty slot (-inf) filled or not weighs the same)
    ("tri-topk-merge-hit", "kernels/decode.py", "hit = ti == wi", "hit = tv == wv", [DEC, REACH, *TRITON]),
    ("tri-topk-select-ties", "kernels/decode.py", "(eq & (rank <= ties))", "(eq & (rank < ties))",
     [DEC, REACH, FUZZ, *TRITON]),
    ("tri-topk-select-seen", "kernels/decode.py", "seen += tl.sum(eq.to(tl.int32), 0)", "seen += 0",
     [DEC, REACH, FUZZ, *TRITON]),
    ("tri-dark-row-tiles", "kernels/decode.py", "for a0 in range(0, n, TILE):", "for a0 in range(0, TILE, TILE):",
     [DEC, REACH, FUZZ, *TRITON]),
    ("tri-lsa-window-cols", "kernels/decode.py", "& (di <= r) & (dj <= r)", "& (di <= r)", [DEC, REACH, *TRITON]),
    ("tri-nan-later-block", "kernels/decode.py", "nans += (v != v).to(tl.int32)",
     "nans = (v != v).to(tl.int32)", [DEC, REACH, *TRITON]),
    ("tri-affine-batch", "kernels/decode.py", "a = aff_ptr + (c // KB) * 6", "a = aff_ptr + (c % KB) * 6",
     [DEC, REACH, *TRITON]),
    ("tri-scalar-f64", "kernels/common.py", "return (tl.zeros([], COMPUTE) + value).to(COMPUTE)",
     "return (tl.zeros([], tl.float32) + value).to(COMPUTE)", [DEC, ENC, REACH, *TRITON]),
    # Triton encode
    ("tri-loss-block-slot", "kernels/encode.py", "tl.store(out_ptr + c * tl.num_programs(1) + blk, total)",
     "tl.store(out_ptr + c * tl.num_programs(1), total)", [ENC, REACH, *TRITON]),
    ("tri-offsets-weight-mask", "kernels/encode.py", "inside = inside & ((dx * 0 + wt) != 0)",
     "inside = inside", [ENC, REACH, *TRITON]),
    ("tri-rounded-centre", "kernels/encode.py", "x = tl.floor(x + 0.5)", "x = tl.floor(x)", [ENC, REACH, *TRITON]),
    ("tri-awing-linear", "kernels/encode.py", "out = tl.where(d < theta, near, a * d - cc)",
     "out = tl.where(d < theta, near, a * d + cc)", [ENC, REACH, *TRITON]),
    # Python ops and reference
    ("py-hih-centers-axes", "fastlmk/ops/encode.py", "scaled = torch.stack([frac[..., 0] * wo, frac[..., 1] * ho]",
     "scaled = torch.stack([frac[..., 0] * ho, frac[..., 1] * wo]", [ENC, DEC, REACH, MODELS]),
    ("py-decode-hih-axes", "fastlmk/ops/decode.py", "torch.stack([fine[..., 0] / wo, fine[..., 1] / ho], dim=-1)",
     "torch.stack([fine[..., 0] / ho, fine[..., 1] / wo], dim=-1)", [DEC, REACH, MODELS]),
    ("py-raw-shape-check", "fastlmk/_checks.py",
     "if t.dim() != len(shape) or any(n is not None and n != m for n, m in zip(shape, t.shape)):",
     "if t.dim() != len(shape):", [FUZZ, "tests/test_errors.py"]),
    ("py-raw-grad-dtype", "fastlmk/ops/encode.py", "_loss_shape(pred, reduction), pred.device, pred.dtype)",
     "_loss_shape(pred, reduction), pred.device)", [FUZZ]),
    # C++ decode
    ("cpp-argmax-first", "csrc/decode/decode_kernels.h", "    if (v > p.value) {\n      p.value = v;",
     "    if (v >= p.value) {\n      p.value = v;", [DEC, REACH, *CPU]),
    ("cpp-quarter-sign", "csrc/decode/decode_kernels.h",
     "return S(0.25) * S((hi > lo) - (hi < lo));", "return S(0.25) * S((hi < lo) - (hi > lo));", [DEC, *CPU]),
    ("cpp-avx2-first-hit", "csrc/decode/decode_kernels.h", "j += __builtin_ctz(unsigned(hit));",
     "j += 31 - __builtin_clz(unsigned(hit));", [DEC, REACH, *CPU]),
    ("cpp-affine-batch", "csrc/decode/decode_kernels.h", "const S* A = affine + 6 * (ch / a.k_per_batch);",
     "const S* A = affine + 6 * (ch % a.k_per_batch);", [DEC, REACH, *CPU]),
    # C++ encode
    ("cpp-loss-mean", "csrc/encode/encode_kernels.h", "if (a.reduction == kMean) total /= double(a.bk * a.h * a.w);",
     "if (a.reduction == kMean) total /= double(a.bk * a.h);", [ENC, REACH, *CPU]),
    # (the clamp of lo is not mutated: the settle loops after it re-derive both ends from the predicate, so
    # any start within a pixel of the window gives the same window; the clamp of hi to n - 1 is what keeps
    # the window inside the map)
    ("cpp-window-hi", "csrc/encode/encode_kernels.h", "hi = b > S(n - 1) ? n - 1 : int64_t(b);",
     "hi = b > S(n - 1) ? n : int64_t(b);", [ENC, REACH, *CPU]),
    ("cpp-disc-edge", "csrc/encode/encode_kernels.h", "if (dx * dx + dy * dy <= p * p) store(o[i * W + j], wt);",
     "if (dx * dx + dy * dy < p * p) store(o[i * W + j], wt);", [ENC, REACH, *CPU]),
    # multi-instance targets, mmpose's patches and SimCC (issue 15)
    ("cpp-render-instances-max", "csrc/encode/encode_kernels.h",
     "store(o[i * W + j], q && inst.earlier(q, i, j) ? std::max(load<S>(o[i * W + j]), v) : v);",
     "store(o[i * W + j], v);", [ENC, *CPU]),
    ("cpp-loss-instances-max", "csrc/encode/encode_kernels.h",
     "out[j] = any && earlier(q, i, j) ? std::max(out[j], v) : v;", "out[j] = v;", [ENC, *CPU]),
    ("cpp-patch-end", "csrc/encode/encode_kernels.h", "last = std::trunc(double(mu) + double(r) + 1.0) - 1.0;",
     "last = std::trunc(double(mu) + double(r) + 1.0);", [ENC, *CPU]),
    ("cpp-simcc-score", "csrc/decode/decode_kernels.h", "std::min(px.value, py.value)",
     "std::max(px.value, py.value)", [DEC, *CPU]),
    ("tri-udp-shift", "kernels/encode.py", "            c = c + (x - mu)", "            c = c - (x - mu)",
     [ENC, *TRITON]),
    ("tri-simcc-onehot", "kernels/encode.py", "val = tl.where(j == tl.floor(c + 0.5), wt * (1 - smoothing), rest)",
     "val = tl.where(j == tl.floor(c), wt * (1 - smoothing), rest)", [ENC, *TRITON]),
    ("py-codec-patch-end", "fastlmk/codecs.py", "lo, hi, radius = torch.trunc(mu - r), torch.trunc(mu + r + 1), 3.0",
     "lo, hi, radius = torch.trunc(mu - r), torch.trunc(mu + r), 3.0", [CODECS]),
    ("cpp-simcc-reach", "csrc/encode/encode_kernels.h", "std::sqrt(kExpZero<S> / -double(k)) * 1.001 + 1.0",
     "std::sqrt(kExpZero<S> / -double(k)) * 0.8", [ENC, "-k", "simcc and cpu"]),
    # the per-sample codec rule (csrc/codecs)
    ("cpp-codec-patch-end", "csrc/codecs/codecs.cpp", "hi = std::trunc(mu + r + 1.0f);", "hi = std::trunc(mu + r);",
     [CODECS]),
    ("cpp-codec-meets-edge", "csrc/codecs/codecs.cpp", "if (!(lo < size[axis] && hi >= 0.0f)) return false;",
     "if (!(lo < size[axis] && hi > 0.0f)) return false;", [CODECS]),
    ("cpp-codec-dark-window", "csrc/codecs/codecs.cpp", "hi = x + r + 1.0f;", "hi = x + r;", [CODECS]),
    ("cpp-codec-unseen-weight", "csrc/codecs/codecs.cpp", "weights[q] = seen && !in ? V(0) : vis[q];",
     "weights[q] = !in ? V(0) : vis[q];", [CODECS]),
    ("cpp-codec-seen", "csrc/codecs/codecs.cpp", "vis[q] >= V(0.5)", "vis[q] > V(0.5)", [CODECS]),
    ("cpp-codec-simcc-end", "csrc/codecs/codecs.cpp", "hi = a.kind == kSimccGaussian ? mu + r + 1.0 : mu;",
     "hi = a.kind == kSimccGaussian ? mu + r : mu;", [CODECS]),
    ("cpp-codec-simcc-round", "csrc/codecs/codecs.cpp", "std::nearbyint(a.kp[q] * a.split)",
     "std::round(a.kp[q] * a.split)", [CODECS]),
    # the flip test
    ("cpp-flip-first-block", "csrc/decode/decode_kernels.h", "_mm256_setr_epi32(7, 7, 6, 5, 4, 3, 2, 1)",
     "_mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0)", [DEC, "-k", "flip and cpu-avx2"]),
    ("cpp-flip-nan-pairs", "csrc/decode/decode_kernels.h", "_mm256_cmp_ps(v2, v3, _CMP_UNORD_Q)",
     "_mm256_cmp_ps(v2, v2, _CMP_UNORD_Q)", [DEC, "-k", "flip and cpu-avx2"]),
    ("cpp-flip-chain", "csrc/decode/decode_kernels.h", "acc3 = _mm256_max_ps(acc3, v3);", "acc3 = _mm256_max_ps(acc3, v2);",
     [DEC, "-k", "flip and cpu-avx2"]),
    ("cpp-flip-first-hit", "csrc/decode/decode_kernels.h",
     "if (hit) return {top, i * W + j + __builtin_ctz(unsigned(hit)), false};",
     "if (hit) return {top, i * W + j + 31 - __builtin_clz(unsigned(hit)), false};", [DEC, "-k", "flip and cpu-avx2"]),
    ("cpp-flip-block-tail", "csrc/decode/decode_kernels.h",
     "      acc0 = _mm256_max_ps(acc0, v);\n", "", [DEC, "-k", "flip and cpu-avx2"]),
    ("cpp-flip-channel", "csrc/decode/decode_kernels.h", "return ch - k + (f.flip_index ? f.flip_index[k] : k);",
     "return ch - k + k;", [DEC, "-k", "flip and cpu"]),
    ("cpp-flip-offset-sign", "csrc/decode/decode_kernels.h", "dx = (dx - f[q]) * S(0.5);",
     "dx = (dx + f[q]) * S(0.5);", [DEC, "-k", "flip and cpu"]),
    ("cpp-flip-scratch-shift", "csrc/decode/decode_kernels.h",
     "const int64_t o = f.flip_shift ? 0 : 1;  // column j >= 1", "const int64_t o = 1;  // column j >= 1",
     [DEC, "-k", "flip and cpu"]),
    ("tri-flip-shift", "kernels/decode.py", "fx = W - tl.maximum(x, 1) if SHIFT else W - 1 - x",
     "fx = W - 1 - x", [DEC, "-k", "flip and triton"]),
    ("tri-flip-channel", "kernels/decode.py", "fc = c - c % KB + tl.load(fidx_ptr + c % KB) if FLIP else c\n"
     "    fbase", "fc = c if FLIP else c\n    fbase", [DEC, "-k", "flip and triton"]),
    ("py-flip-adjoint", "fastlmk/reference/decode.py", "return out.index_copy(1,", "return out.index_select(1,",
     [DEC, "-k", "flip_soft_argmax or adjoint"]),
    ("py-codec-udp-flip-sign", "fastlmk/codecs.py", "torch.tensor([1.0, -1.0, 1.0]", "torch.tensor([1.0, 1.0, 1.0]",
     [CODECS, "-k", "flip"]),
    # SHT (models/sht.py)
    ("py-sht-fublock1", "models/sht.py", "return q + q * torch.sigmoid(self.attention(p))",
     "return q * torch.sigmoid(self.attention(p))", ["tests/test_sht.py"]),
    ("py-sht-fublock2", "models/sht.py", "return p + self.conv(torch.cat([p, q], 1))",
     "return self.conv(torch.cat([p, q], 1))", ["tests/test_sht.py"]),
    ("py-sht-gradient", "models/sht.py", "kx = images.new_tensor([[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])",
     "kx = images.new_tensor([[0.0, 0.0, 0.0], [0.0, -1.0, 1.0], [0.0, 0.0, 0.0]])", ["tests/test_sht.py"]),
    ("py-sht-gammas", "models/sht.py", "total = g1 * heat + g2 * pixel + g3 * edge",
     "total = g1 * heat + g2 * pixel + g2 * edge", ["tests/test_sht.py"]),
    ("py-sht-patb", "models/sht.py", "image = image + torch.sigmoid(a) * self.code_i(image)",
     "image = image + a * self.code_i(image)", ["tests/test_sht.py"]),
    ("py-sht-gan-fake-label", "models/sht.py", "+ bce(fake_a, torch.zeros_like(fake_a))",
     "+ bce(fake_a, torch.ones_like(fake_a))", ["tests/test_sht.py"]),
    ("py-sht-gan-detach", "models/sht.py", "scores(generated.detach(), cond, pose)", "scores(generated, cond, pose)",
     ["tests/test_sht.py"]),
    ("py-sht-gan-detach-inputs", "models/sht.py", "cond, pose = condition.detach(), target_pose.detach()",
     "cond, pose = condition, target_pose", ["tests/test_sht.py"]),
    ("py-sht-unlabelled-weights", "models/sht_train.py", "weights / v[\"labelled\"].float().mean()", "weights",
     ["tests/test_sht.py", "-k", "weights"]),
    ("py-sht-partner", "models/sht_train.py", "t.view(-1, 2, *t.shape[1:]).flip(1).flatten(0, 1)",
     "t.view(-1, 2, *t.shape[1:]).flatten(0, 1)", ["tests/test_sht.py", "-k", "partner"]),
    ("py-pairs-pixel-centres", "fastlmk/data/hallucination.py", "points = (points + 0.5) * (self.net / self.hr) - 0.5",
     "points = points * (self.net / self.hr)", ["tests/test_sht.py", "-k", "pairs"]),
    ("py-pairs-antialias", "fastlmk/data/hallucination.py", 'mode="bicubic", align_corners=False, antialias=True)',
     'mode="bicubic", align_corners=False)', ["tests/test_sht.py", "-k", "pairs"]),
    ("py-pairs-same-view", "fastlmk/data/hallucination.py",
     "views = [self.view(image, landmarks, generator) for _ in range(2)]",
     "views = [self.view(image, landmarks, generator)] * 2", ["tests/test_sht.py", "-k", "pairs"]),
    # C++ XNOR
    ("cpp-xnor-avx2-widen", "csrc/xnor/xnor_kernels.h", "if (++pending == 31) {", "if (++pending == 33) {",
     [XNOR, *CPU]),
    ("cpp-pack-sign-zero", "csrc/xnor/xnor_kernels.h", "word |= uint64_t(v < S(0)) << b;",
     "word |= uint64_t(v <= S(0)) << b;", [XNOR, *CPU]),
    ("cpp-xnor-pad-rows", "csrc/xnor/xnor_kernels.h", "if (iy >= 0 && iy < h && ix >= 0 && ix < w) continue;",
     "if (iy >= 0 && iy < h && ix >= 0 && ix <= w) continue;", [XNOR, *CPU]),
    # C++ splat
    ("cpp-splat-zbuffer-ties", "csrc/splat/splat_kernels.h", "(owner[c] < 0 || z[i] < z[owner[c]])",
     "(owner[c] < 0 || z[i] <= z[owner[c]])", [SPLAT, *CPU]),
    ("cpp-splat-normalise", "csrc/splat/splat_kernels.h", "num[p] = den[p] > T(0) ? num[p] / den[p] : T(0);",
     "num[p] = den[p] > T(0) ? num[p] : T(0);", [SPLAT, *CPU]),
]


def _run(cmd: list[str], cwd: Path, env: dict, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="scratch folder for the mutated copy")
    parser.add_argument("--only", nargs="*", help="mutant ids to run (default: all)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per mutant's test run")
    args = parser.parse_args()
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(args.dir.resolve()), "FASTLMK_CUDA": "0"}
    if shutil.which("ccache"):
        env.update(CC="ccache gcc", CXX="ccache g++")
    subprocess.run(["bash", str(ROOT / "tests/native_variant.sh"), "plain", str(args.dir)], env=env, check=True)
    chosen = [m for m in MUTANTS if not args.only or m[0] in args.only]
    rows, survived = [], 0
    print("| mutant | file | result | first failing test | s |\n| --- | --- | --- | --- | --- |", flush=True)
    for ident, rel, text, replacement, tests in chosen:
        path = args.dir / rel
        source = path.read_text()
        if source.count(text) != 1:
            rows.append((ident, rel, "not applicable (text not found once)", "", 0.0))
            print("| {} | {} | {} | {} | {:.0f} |".format(*rows[-1]), flush=True)
            survived += 1
            continue
        start = time.time()
        path.write_text(source.replace(text, replacement))
        try:
            if rel.startswith("csrc/"):
                build = _run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], args.dir, env, 1800)
                if build.returncode:
                    rows.append((ident, rel, "build failed", build.stderr[-300:].replace("\n", " "), 0.0))
                    continue
            done = _run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests], args.dir, env,
                        args.timeout)
            failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
            # pytest's exit codes: 1 tests failed, 5 none collected (a selection that matched nothing)
            result = {0: "SURVIVED", 1: "caught", 5: "no test selected"}.get(done.returncode,
                                                                              f"caught (exit {done.returncode})")
            survived += result in ("SURVIVED", "no test selected")
            rows.append((ident, rel, result, failed[0].split(" ", 1)[1].split(" - ")[0] if failed else "",
                         time.time() - start))
        finally:
            path.write_text(source)
            if rows and rows[-1][0] == ident:
                print("| {} | {} | {} | {} | {:.0f} |".format(*rows[-1]), flush=True)
    if any(rel.startswith("csrc/") for _, rel, *_ in chosen):  # leave DIR's build unmutated
        _run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], args.dir, env, 1800)
    print(f"\n{len(rows) - survived} caught, {survived} survived of {len(rows)}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
