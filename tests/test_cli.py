"""The README's main command runs end to end (tiny sizes, no timing assertions)."""

import pytest

from fastlmk import bench, cli


def test_bench_command_prints_the_table(capsys, monkeypatch):
    monkeypatch.setattr(bench, "QUICK_MIN_TIME", 0.0)
    assert cli.main(["bench", "--quick", "--device", "cpu", "--family", "encode"]) == 0
    out = capsys.readouterr().out
    for row in ("render_gaussian", "heatmap_loss", "torch.zeros", "outer-product", "**fastlmk**"):
        assert row in out


def test_no_subcommand_prints_help_and_fails():
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2
