"""The README's main command runs end to end (tiny sizes, no timing assertions)."""

import pytest
import torch

from fastlmk import bench, cli


BENCH_ROWS = {
    "encode": ("| render_gaussian |", "| heatmap_loss mse fwd+bwd |", "torch.zeros", "outer-product"),
    "decode": ("| decode quarter |", "| decode dark |", "| decode topk |", "| soft_argmax fwd+bwd |"),
    "splat": ("| splat fwd |", "| splat fwd+bwd |"),
    "xnor": ("| binary_conv2d |", "| binary_conv2d packed out |", "| pack_bits |", "| binary_linear |",
             "| HPM block (eval) |"),
    "train": ("| FAN train step (fwd + bwd + Adam) |", "| targets + loss (fwd + bwd) |"),
    "codecs": ("| MSRAHeatmap.encode K=17 |", "| MSRAHeatmap.encode K=98 |", "| generate_gaussian_heatmaps |",
               "| MSRAHeatmap.decode (DARK) |", "| SimCCLabel.encode |"),
}


@pytest.mark.parametrize("family", BENCH_ROWS)
def test_bench_command_prints_the_table(capsys, monkeypatch, family):
    """Every family's quick suites run (each case once) and print one row per case and one summary line per op."""
    monkeypatch.setattr(bench, "QUICK_MIN_TIME", 0.0)
    assert cli.main(["bench", "--quick", "--device", "cpu", "--family", family]) == 0
    out = capsys.readouterr().out
    ops = {s.op for s in bench.FAMILIES[family](torch.device("cpu"), True)}
    for row in BENCH_ROWS[family]:
        assert row in out
    assert out.count("| **fastlmk") == len(ops) and sum(f"- `{op}`: fastlmk" in out for op in ops) == len(ops)


def test_no_subcommand_prints_help_and_fails():
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2


def test_quantization_command_prints_the_table(capsys, tmp_path):
    import numpy as np

    from fastlmk import quantization

    path = tmp_path / "faces.npy"
    np.save(path, quantization.synthetic_faces(3).numpy())
    out_md = tmp_path / "table.md"
    assert cli.main(["quantization", "--landmarks", str(path), "--heatmap-size", "32", "--norm", "bbox",
                     "--markdown", str(out_md)]) == 0
    out = capsys.readouterr().out
    assert "3 x 98 landmarks" in out and "normalised by bbox" in out and "NME % @32" in out and "@64" not in out
    for row in ("| Gaussian, rounded centre | argmax (DIRECT) |", "dark (blur 11)", "H3R one-hot", "HIH unbiased",
                "offset maps"):
        assert row in out
    assert out_md.read_text() == out


def test_quantization_command_synthetic_faces_and_bad_input(capsys, tmp_path):
    import torch

    assert cli.main(["quantization", "--faces", "2", "--image-size", "128", "--heatmap-size", "32"]) == 0
    assert "2 x 98 landmarks (synthetic" in capsys.readouterr().out
    bad = tmp_path / "bad.pt"
    torch.save(torch.zeros(2, 5, 2), bad)
    with pytest.raises(SystemExit) as exc:
        cli.main(["quantization", "--landmarks", str(bad)])
    assert exc.value.code == 2
    assert "K=5" in capsys.readouterr().err
