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


# ------------------------------------------------------------------------------------------- CLI mistakes

def _checkpoint(path) -> None:
    """A tiny untrained fan checkpoint, as fastlmk train writes one (its keys the commands read)."""
    from fastlmk.models import zoo
    model = zoo.build("fan", num_landmarks=68, input_size=64, channels=8, depth=2)
    torch.save({"model": "fan", "config": model.config, "state": model.state_dict(),
                "train_config": {"seed": 0}}, path)


@pytest.fixture
def files(tmp_path):
    """A checkpoint, a 64x48 image and the files that are not checkpoints."""
    from PIL import Image
    _checkpoint(tmp_path / "fan.pt")
    Image.new("RGB", (64, 48), (120, 90, 60)).save(tmp_path / "face.png")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "notes.md").write_text("# not a checkpoint\n")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    whole = (tmp_path / "fan.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(whole[:len(whole) // 2])
    return tmp_path


MISTAKES = [
    (["eval", "{d}/notes.md"], "eval", "notes.md is not a fastlmk checkpoint (torch.load: UnpicklingError)"),
    (["eval", "{d}/empty.pt"], "eval", "empty.pt is not a fastlmk checkpoint (torch.load: EOFError)"),
    (["eval", "{d}/truncated.pt"], "eval", "truncated.pt is not a fastlmk checkpoint (torch.load:"),
    (["eval", "{d}/foreign.pt"], "eval", "foreign.pt is not a fastlmk checkpoint (a dict with config, model, state"),
    (["eval", "{d}/tensor.pt"], "eval", "tensor.pt is not a fastlmk checkpoint (a dict with"),
    (["eval", "{d}/missing.pt"], "eval", "no checkpoint at"),
    (["predict", "{d}/face.png", "--checkpoint", "{d}/notes.md"], "predict", "notes.md is not a fastlmk checkpoint"),
    (["predict", "{d}/face.png", "--checkpoint", "{d}/fan.pt", "--box", "1000", "1000", "1200", "1200"], "predict",
     "--box 1000 1000 1200 1200 lies outside the 64x48 image"),
    (["predict", "{d}/face.png", "--checkpoint", "{d}/fan.pt", "--box", "-20", "5", "-0.5", "30"], "predict",
     "--box -20 5 -0.5 30 lies outside the 64x48 image"),
    (["predict", "{d}/face.png", "--checkpoint", "{d}/fan.pt", "--box", "63.5", "5", "90", "30"], "predict",
     "--box 63.5 5 90 30 lies outside the 64x48 image"),
    (["predict", "{d}/face.png", "--checkpoint", "{d}/fan.pt", "--box", "40", "30", "10", "5"], "predict",
     "--box 40 30 10 5: need X0 < X1 and Y0 < Y1"),
    (["predict", "{d}/face.png", "--checkpoint", "{d}/fan.pt", "--box", "0", "0", "nan", "9"], "predict",
     "--box must be 4 finite numbers X0 Y0 X1 Y1, got 0 0 nan 9"),
    (["predict", "{d}/nothing.png", "--checkpoint", "{d}/fan.pt"], "predict", "nothing.png"),
    (["predict", "{d}/notes.md", "--checkpoint", "{d}/fan.pt"], "predict", "cannot read image"),
    (["train", "--lr", "-1"], "train", "argument --lr: must be above 0, got -1"),
    (["train", "--lr", "nan"], "train", "argument --lr: must be above 0, got nan"),
    (["train", "--epochs", "0"], "train", "argument --epochs: must be at least 1, got 0"),
    (["train", "--workers", "-1"], "train", "argument --workers: must be at least 0, got -1"),
    (["train", "--model", "sht", "--finetune-lr", "0"], "train", "argument --finetune-lr: must be above 0, got 0"),
    (["train", "--model", "sht", "--stage-epochs", "1", "1", "-1", "1"], "train",
     "argument --stage-epochs: must be at least 0, got -1"),
    (["train", "--data", "nowhere:x", "--out", "{d}/run"], "train", "nowhere"),
    (["eval", "{d}/fan.pt", "--limit", "0"], "eval", "argument --limit: must be at least 1, got 0"),
    (["quantization", "--sigma", "0"], "quantization", "argument --sigma: must be above 0, got 0"),
    (["quantization", "--faces", "0"], "quantization", "argument --faces: must be at least 1, got 0"),
]


@pytest.mark.parametrize("argv, command, message", MISTAKES, ids=[" ".join(m[0])[:60] for m in MISTAKES])
def test_cli_mistakes_are_one_line_errors(files, capsys, argv, command, message):
    """Each mistake exits 2 with the subcommand's usage and one error line naming the argument or the file, with
    no traceback and no NumPy scalar repr; nothing is written."""
    before = sorted(files.iterdir())
    with pytest.raises(SystemExit) as exc:
        cli.main([a.format(d=files) for a in argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert err.startswith(f"usage: fastlmk {command} ") and len(errors) == 1, err
    assert errors[0].startswith(f"fastlmk {command}: error: ") and message in errors[0], err
    assert "Traceback" not in err and "np.float" not in err
    assert sorted(files.iterdir()) == before


def test_predict_writes_beside_the_image(files, capsys, monkeypatch, tmp_path_factory):
    """Without --out the picture goes beside the input image, not into the current folder; a box reaching past
    the border (a face at the edge of a photo) is accepted."""
    from PIL import Image
    elsewhere = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(elsewhere)
    assert cli.main(["predict", str(files / "face.png"), "--checkpoint", str(files / "fan.pt"),
                     "--box", "-10", "-5", "30", "40"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 68
    assert Image.open(files / "face_landmarks.png").size == (64, 48)
    assert list(elsewhere.iterdir()) == []


def test_help_texts_print_plain_percent(capsys):
    """argparse does not %-format descriptions: the quantization help shows 'NME (%)'."""
    with pytest.raises(SystemExit):
        cli.main(["quantization", "--help"])
    out = capsys.readouterr().out
    assert "NME (%)" in out and "%%" not in out
