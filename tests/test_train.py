"""The trainer and the train / eval / predict commands, end to end on tiny synthetic runs: the loss drops,
checkpoints resume to the same result as an uninterrupted run, two gloo processes train under torchrun, and
bad input fails with a message naming the file and line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastlmk.cli import main
from fastlmk.data import open_dataset
from fastlmk.models import train as train_module
from fastlmk.models import zoo
from fastlmk.models.evaluation import load_checkpoint
from fastlmk.models.train import TrainConfig, train

DATA = "synthetic:32,16"
TINY = dict(channels=16, depth=2)


def config(out: Path, **kw) -> TrainConfig:
    base = dict(model="fan", data=DATA, out=str(out), epochs=1, batch_size=8, input_size=64, model_args=TINY,
                progress=False, lr=2e-3)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_loss_drops(name: str) -> None:
    """A few Adam steps on one batch of synthetic faces lower every model's loss."""
    torch.manual_seed(0)
    data = open_dataset(DATA, "train", size=64)
    batch = torch.utils.data.default_collate([data[i] for i in range(8)])
    model = zoo.build(name, num_landmarks=68, input_size=64, **({} if name == "pifa" else TINY))
    optimizer = torch.optim.Adam(model.parameters(), 2e-3)
    losses = []
    for _ in range(20):
        torch.manual_seed(1)  # the same H3R rounding and dropout mask every step
        loss = model.loss(model(batch["image"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.95 * losses[0] and losses[-1] < min(losses[:5]), losses


def test_train_writes_everything_and_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    straight = train(config(tmp_path / "a", epochs=2))
    assert [h["epoch"] for h in straight["history"]] == [1, 2]
    for name in ("last.pt", "best.pt", "results.json", "predictions.png"):
        assert (tmp_path / "a" / name).is_file()
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert set(saved["final"]["metrics"]) == {"quarter", "argmax", "dark", "parabola", "mean-shape"}
    assert saved["final"]["count"] == 16 and saved["train_images"] == 32

    save = train_module.save_checkpoint

    def crash_after_first_checkpoint(path: Path, payload: dict) -> None:
        save(path, payload)
        if path.name == "last.pt":
            raise KeyboardInterrupt  # the run dies after epoch 1's checkpoint

    monkeypatch.setattr(train_module, "save_checkpoint", crash_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "b", epochs=2))
    monkeypatch.setattr(train_module, "save_checkpoint", save)
    resumed = train(config(tmp_path / "b", epochs=2, resume=True))
    timing = ("seconds", "step_ms")
    assert [{k: v for k, v in h.items() if k not in timing} for h in resumed["history"]] == \
        [{k: v for k, v in h.items() if k not in timing} for h in straight["history"]]
    a, _ = load_checkpoint(tmp_path / "a" / "last.pt")
    b, _ = load_checkpoint(tmp_path / "b" / "last.pt")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name  # bitwise: data order, augmentation, RNG and optimizer all restored


def test_eval_and_predict_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train(config(tmp_path, model="hih", limit_val=8))
    assert main(["eval", str(tmp_path / "best.pt"), "--data", DATA, "--limit", "8",
                 "--markdown", str(tmp_path / "eval.md")]) == 0
    table = capsys.readouterr().out
    assert "| hih |" in table and "| integer |" in table and "| mean-shape |" in table
    from PIL import Image
    image = (open_dataset(DATA, "test", size=96)[0]["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "face.png")
    assert main(["predict", str(tmp_path / "face.png"), "--checkpoint", str(tmp_path / "last.pt"),
                 "--out", str(tmp_path / "drawn.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    points = np.array([[float(v) for v in line.split()] for line in lines])
    assert points.shape == (68, 2) and np.isfinite(points).all()
    assert Image.open(tmp_path / "drawn.png").size == (96, 96)
    with pytest.raises(SystemExit):  # resuming with another geometry is refused, naming the setting
        main(["train", "--model", "hih", "--data", DATA, "--out", str(tmp_path), "--resume", "--input-size", "96"])
    assert "input_size=64, not 96" in capsys.readouterr().err


def test_cli_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--data", f"wflw:{tmp_path / 'nowhere'}", "--out", str(tmp_path / "run")])
    assert "nowhere" in capsys.readouterr().err
    (tmp_path / "train.csv").write_text("image,x0,y0\nface.png,1,2,3\n")
    (tmp_path / "test.csv").write_text("image,x0,y0\nface.png,1,2\n")
    with pytest.raises(SystemExit):
        main(["train", "--data", f"csv:{tmp_path}", "--out", str(tmp_path / "run")])
    assert "train.csv:2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path / "missing.pt")])
    assert "missing.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "fresh"), "--resume", "--data", DATA])
    assert "last.pt" in capsys.readouterr().err


# `fastlmk ...`, then an error if a gloo thread is still running once main has returned (Linux: /proc)
CLI_THEN_COUNT_GLOO_THREADS = """\
import os, sys
from fastlmk.cli import main
status = main(sys.argv[1:])
names = []
if os.path.isdir("/proc/self/task"):
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # a thread that has just ended
            pass
gloo = [n for n in names if "gloo" in n]
sys.exit(f"rank {os.environ['RANK']}: gloo threads still running after train: {gloo}" if gloo else status)
"""


def test_torchrun_two_gloo_processes(tmp_path: Path) -> None:
    """DistributedDataParallel on CPU: 2 processes, each a shard of the 32 faces per epoch. When train returns,
    each process has freed its process group: no gloo thread (TCP loop, workers) is left to run while the
    interpreter exits, where it raced the other rank's teardown (SIGABRT, "terminate called without an active
    exception")."""
    script = tmp_path / "fastlmk_cli.py"
    script.write_text(CLI_THEN_COUNT_GLOO_THREADS)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           "train", "--data", DATA, "--input-size", "64", "--channels", "16", "--depth", "2",
           "--batch-size", "8", "--epochs", "1", "--no-progress", "--out", str(tmp_path)]
    # cwd: away from the source tree, whose fastlmk/ folder would shadow the installed package
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["processes"] == 2
    assert saved["history"][0]["step_ms"] > 0 and np.isfinite(saved["final"]["metrics"]["quarter"]["nme"])
