"""SHT (models/sht.py, seed 004): DHLN's fusion blocks, the gradient loss, PATB and the FPTN losses against
the equations written out here; L_DH's weights and its gamma_1 = 0 form; shapes, gradients, a short training
run; the training pairs (fastlmk.data.HallucinationPairs); bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fastlmk import ops
from fastlmk.models import sht


def test_fublock1_is_eq1(gen):
    block = sht.FUBlock1(8, 4).eval()
    p, q = torch.randn(2, 8, 6, 5, generator=gen), torch.randn(2, 4, 6, 5, generator=gen)
    rb = block.proj(p) + block.rb[5](F.relu(block.rb[3](block.rb[2](F.relu(block.rb[0](p))))))
    torch.testing.assert_close(block(p, q), q + q * torch.sigmoid(rb))


def test_fublock2_is_eq2(gen):
    block = sht.FUBlock2(8, 4)
    p, q = torch.randn(2, 8, 6, 5, generator=gen), torch.randn(2, 4, 6, 5, generator=gen)
    w, b = block.conv.weight, block.conv.bias
    want = p + F.conv2d(torch.cat([p, q], 1), w, b, padding=1)
    torch.testing.assert_close(block(p, q), want)


def test_gradient_map_is_central_differences_per_channel(gen):
    images = torch.rand(2, 3, 7, 9, generator=gen, dtype=torch.float64)
    padded = F.pad(images, (1, 1, 1, 1))
    gx = padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]
    gy = padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]
    torch.testing.assert_close(sht.gradient_map(images), torch.sqrt(gx ** 2 + gy ** 2 + 1e-6))
    flat = torch.full((1, 3, 5, 5), 0.7, dtype=torch.float64)
    assert torch.allclose(sht.gradient_map(flat)[..., 1:-1, 1:-1], torch.tensor(1e-3, dtype=torch.float64))


def test_dhln_loss_weights_and_the_unlabelled_form(gen):
    b, k, s = 2, 5, 16
    maps = [torch.rand(b, k, s, s, generator=gen) for _ in range(2)]
    sr, hr = torch.rand(b, 3, 2 * s, 2 * s, generator=gen), torch.rand(b, 3, 2 * s, 2 * s, generator=gen)
    kp = torch.rand(b, k, 2, generator=gen) * (s - 1)
    total, terms = sht.dhln_loss(maps, sr, hr, kp, sigma=1.5)
    target = ops.render_gaussian(kp, s, 1.5)
    heat = sum(((m - target) ** 2).mean() for m in maps)
    pixel = (sr - hr).abs().mean()
    edge = (sht.gradient_map(sr) - sht.gradient_map(hr)).abs().mean()
    torch.testing.assert_close(terms["heatmap"], heat)
    torch.testing.assert_close(total, heat + 0.01 * pixel + 0.01 * edge)
    weighted, _ = sht.dhln_loss(maps, sr, hr, kp, sigma=1.5, gamma=(0.5, 0.2, 0.03))
    torch.testing.assert_close(weighted, 0.5 * heat + 0.2 * pixel + 0.03 * edge)
    # Eq. 10: no landmarks, no heatmap term
    unlabelled, terms0 = sht.dhln_loss(maps, sr, hr, None, gamma=(0.0, 0.01, 0.01))
    torch.testing.assert_close(unlabelled, 0.01 * pixel + 0.01 * edge)
    assert terms0["heatmap"].item() == 0
    with pytest.raises(ValueError, match="keypoints are needed when gamma_1"):
        sht.dhln_loss(maps, sr, hr, None)
    with pytest.raises(ValueError, match="must have the same shape"):
        sht.dhln_loss(maps, sr, hr[..., :-1], kp)


@pytest.mark.parametrize("size,upscale", [(16, 2), (24, 4)])
def test_dhln_shapes_and_gradients(gen, size, upscale):
    torch.manual_seed(0)
    model = sht.DHLN(7, stacks=2, channels=16, sr_channels=8, sr_blocks=2, depth=3, upscale=upscale)
    images = torch.rand(2, 3, size, size, generator=gen)
    maps, faces = model(images)
    assert len(maps) == 2 and all(m.shape == (2, 7, size, size) for m in maps)
    assert faces.shape == (2, 3, upscale * size, upscale * size)
    # the heads and the tail's last conv start at zero: the maps at 0, the face at the bicubic upsampling
    assert all(not m.any() for m in maps)
    torch.testing.assert_close(faces, F.interpolate(images, scale_factor=upscale, mode="bicubic",
                                                    align_corners=False))
    kp = torch.rand(2, 7, 2, generator=gen) * (size - 1)
    target = torch.rand_like(faces)
    sht.dhln_loss(maps, faces, target, kp)[0].backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()  # after one step the zero layers pass gradients on
    model.zero_grad()
    maps, faces = model(images)
    sht.dhln_loss(maps, faces, target, kp)[0].backward()
    for name in ("stem.0.weight", "sr_stem.weight", "sr_modules.0.0.conv1.weight", "fuse_q.1.proj.weight",
                 "fuse_q.0.rb.2.weight", "fuse_p.0.conv.weight", "fuse_p.1.conv.weight", "heads.1.weight",
                 "tail.0.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_dhln_bad_input():
    with pytest.raises(ValueError, match="must be a multiple of 2 \\*\\* depth = 8"):
        sht.DHLN(5, channels=16, sr_channels=8, depth=3)(torch.rand(1, 3, 20, 20))
    with pytest.raises(ValueError, match="images must have shape"):
        sht.DHLN(5, channels=16, sr_channels=8)(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="upscale must be a positive int"):
        sht.DHLN(5, upscale=0)
    with pytest.raises(ValueError, match="channels must be a positive multiple of 8"):
        sht.DHLN(5, channels=12)


def test_a_short_training_run_lowers_each_loss(gen):
    """A few Adam steps on one batch (faces of smooth random colour fields; the input their bicubic 4x
    reduction resized back) lower the heatmap, pixel and gradient terms of L_DH."""
    torch.manual_seed(int(torch.randint(0, 2 ** 31, (1,), generator=gen)))
    s, k = 16, 5
    faces = F.interpolate(torch.rand(4, 3, 4, 4, generator=gen), size=2 * s, mode="bicubic", align_corners=False)
    low = F.interpolate(faces, size=s // 2, mode="bicubic", align_corners=False, antialias=True)
    images = F.interpolate(low, size=s, mode="bicubic", align_corners=False)
    kp = 2 + torch.rand(4, k, 2, generator=gen) * (s - 5)
    model = sht.DHLN(k, stacks=2, channels=16, sr_channels=8, sr_blocks=2, depth=2, upscale=2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(80):
        maps, hallucinated = model(images)
        loss, terms = sht.dhln_loss(maps, hallucinated, faces, kp, gamma=(1.0, 1.0, 1.0))
        first = first or {key: v.item() for key, v in terms.items()}
        opt.zero_grad()
        loss.backward()
        opt.step()
    # the face starts at the bicubic upsampling, already close: its terms must fall by 10%, the maps' by 20%
    for key, v in terms.items():
        assert v.item() < (0.8 if key == "heatmap" else 0.9) * first[key], (key, first[key], v.item())


def test_patb_is_its_equations(gen):
    block = sht.PATB(6).eval()
    fi, fp = torch.randn(2, 6, 5, 7, generator=gen), torch.randn(2, 6, 5, 7, generator=gen)
    a = block.code_p(fp)
    want_i = fi + torch.sigmoid(a) * block.code_i(fi)
    want_p = F.conv2d(torch.cat([a, want_i], 1), block.fuse.weight, block.fuse.bias)
    got_i, got_p = block(fi, fp)
    torch.testing.assert_close(got_i, want_i)
    torch.testing.assert_close(got_p, want_p)


def test_fptn_and_discriminator_shapes(gen):
    k = 5
    g = sht.FPTN(k, channels=8, blocks=2, downsample=2)
    image = torch.rand(3, 3, 32, 32, generator=gen)
    heat = torch.rand(3, k, 16, 16, generator=gen)  # DHLN's maps, half the face's size
    out = g(image, heat, heat.flip(-1))
    assert out.shape == image.shape
    d_a, d_s = sht.PatchDiscriminator(6, 8), sht.PatchDiscriminator(k + 3, 8)
    assert d_a(torch.cat([image, out], 1)).shape == (3, 1, 4, 4)
    assert d_s(torch.cat([F.interpolate(heat, size=32), out], 1)).shape == (3, 1, 4, 4)
    with pytest.raises(ValueError, match="target_pose must have shape"):
        g(image, heat, heat[:, :-1])
    with pytest.raises(ValueError, match="multiple of 2 \\*\\* downsample = 4"):
        g(image[..., :30, :30], heat, heat)


def test_a_short_fptn_run_lowers_its_losses(gen):
    """Alternating steps on one batch (the pairs' true faces and Gaussian heatmaps, as FPTN's stage trains)
    lower the generator's pixel term (the discriminators' loss stays near 4 log 2 while both sides learn, so
    only its equations are tested, below)."""
    torch.manual_seed(int(torch.randint(0, 2 ** 31, (1,), generator=gen)))
    k, s = 3, 16
    faces = F.interpolate(torch.rand(4, 3, 4, 4, generator=gen), size=s, mode="bicubic", align_corners=False)
    target = faces.flip(-1)  # the "other view" of each face
    kp = 2 + torch.rand(4, k, 2, generator=gen) * (s - 5)
    pose = ops.render_gaussian(kp, (s, s), 1.0)
    target_pose = ops.render_gaussian(torch.stack([s - 1 - kp[..., 0], kp[..., 1]], -1), (s, s), 1.0)
    g = sht.FPTN(k, channels=8, blocks=1, downsample=2)
    d_a, d_s = sht.PatchDiscriminator(6, 8, layers=2), sht.PatchDiscriminator(k + 3, 8, layers=2)
    opt_g = torch.optim.Adam(g.parameters(), 2e-3)
    opt_d = torch.optim.Adam([*d_a.parameters(), *d_s.parameters()], 2e-3)
    first = None
    for _ in range(60):
        g_loss, d_loss, terms = sht.fptn_losses(faces, target_pose, target, g(faces, pose, target_pose), d_a, d_s,
                                                lam=(0.05, 1.0, 0.0))
        now = {"pixel": terms["pixel"].item()}
        first = first or now
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
    for key, value in now.items():
        assert value < 0.8 * first[key], (key, first[key], value)


def test_fptn_losses_are_eqs_5_to_8(gen):
    k = 4
    d_a, d_s = sht.PatchDiscriminator(6, 8), sht.PatchDiscriminator(k + 3, 8)
    cond, tar = torch.rand(2, 3, 16, 16, generator=gen).requires_grad_(), torch.rand(2, 3, 16, 16, generator=gen)
    pose = torch.rand(2, k, 16, 16, generator=gen).requires_grad_()  # in SHT both come from DHLN
    ger = torch.rand(2, 3, 16, 16, generator=gen, requires_grad=True)
    phi = torch.nn.Conv2d(3, 4, 3)
    g_loss, d_loss, terms = sht.fptn_losses(cond, pose, tar, ger, d_a, d_s, phi, lam=(0.5, 0.2, 0.1))

    def p(d, x):
        return torch.sigmoid(d(x))

    real = torch.log(p(d_a, torch.cat([cond, tar], 1))).mean() + torch.log(p(d_s, torch.cat([pose, tar], 1))).mean()
    fake = (torch.log(1 - p(d_a, torch.cat([cond, ger], 1))).mean()
            + torch.log(1 - p(d_s, torch.cat([pose, ger], 1))).mean())
    torch.testing.assert_close(d_loss, -(real + fake))
    adversarial = -(torch.log(p(d_a, torch.cat([cond, ger], 1))).mean()
                    + torch.log(p(d_s, torch.cat([pose, ger], 1))).mean())
    want = 0.5 * adversarial + 0.2 * (ger - tar).abs().mean() + 0.1 * (phi(ger) - phi(tar)).abs().mean()
    torch.testing.assert_close(g_loss, want)
    assert terms["perceptual"] > 0
    # the discriminator loss does not reach the generator's output; the generator loss does; neither reaches
    # the conditions (in SHT, DHLN's outputs) through the discriminators
    d_loss.backward(retain_graph=True)
    assert ger.grad is None and cond.grad is None and pose.grad is None
    g_loss.backward()
    assert ger.grad.abs().sum() > 0 and cond.grad is None and pose.grad is None
    _, _, no_phi = sht.fptn_losses(cond, pose, tar, ger, d_a, d_s)
    assert no_phi["perceptual"].item() == 0
    with pytest.raises(ValueError, match="must have one shape"):
        sht.fptn_losses(cond, pose, tar[..., :8], ger, d_a, d_s)


def _faces(gen, n=3, size=32, k=6):
    """A stand-in source: smooth random faces with landmarks inside."""
    images = F.interpolate(torch.rand(n, 3, 4, 4, generator=gen), size=size, mode="bicubic", align_corners=False)
    points = 8 + torch.rand(n, k, 2, generator=gen) * (size - 16)
    return [dict(image=images[i].clamp(0, 1), landmarks=points[i]) for i in range(n)]


def test_hallucination_pairs_views(gen):
    from fastlmk.data import HallucinationPairs, apply_affine, warp
    source = _faces(gen)
    pairs = HallucinationPairs(source, hr_size=32, net_size=16, lr_size=8, seed=int(torch.randint(0, 99, (1,),
                                                                                                     generator=gen)))
    item = pairs[1]
    assert item["face"].shape == (2, 3, 32, 32) and item["input"].shape == (2, 3, 16, 16)
    assert item["landmarks"].shape == (2, 6, 2) and bool(item["labelled"])
    again = pairs[1]
    assert all(torch.equal(item[key], again[key]) for key in item)  # a function of (seed, index)
    assert not torch.equal(item["face"][0], item["face"][1])  # two different views
    for v in range(2):
        # the view is a similarity about the centre: recover it from the landmarks (hr pixels) and check that
        # the face is the source warped by it, and the input its bicubic reduction resized back
        hr_points = (item["landmarks"][v].double() + 0.5) * 2 - 0.5
        src = source[1]["landmarks"].double()
        c = torch.full((2,), 15.5, dtype=torch.float64)
        a, b = src - c, hr_points - c
        z = torch.complex(b[:, 0], b[:, 1]) / torch.complex(a[:, 0], a[:, 1])
        assert (z - z.mean()).abs().max() < 1e-4  # one rotation and scale for every point
        angle, scale = math.degrees(z.mean().angle()), z.mean().abs().item()
        assert abs(angle) <= 30 + 1e-6 and 0.8 - 1e-6 <= scale <= 1.2 + 1e-6
        linear = scale * torch.tensor([[math.cos(math.radians(angle)), -math.sin(math.radians(angle))],
                                       [math.sin(math.radians(angle)), math.cos(math.radians(angle))]],
                                      dtype=torch.float64)
        affine = torch.cat([linear, (c - linear @ c)[:, None]], 1).numpy()
        torch.testing.assert_close(torch.from_numpy(apply_affine(affine, src.numpy())), hr_points, atol=1e-4, rtol=0)
        torch.testing.assert_close(item["face"][v], warp(source[1]["image"], affine, 32), atol=1e-3, rtol=0)
        low = F.interpolate(item["face"][v][None], size=8, mode="bicubic", align_corners=False, antialias=True)
        torch.testing.assert_close(item["low"][v], low[0])
        torch.testing.assert_close(item["input"][v], F.interpolate(low, size=16, mode="bicubic",
                                                                  align_corners=False)[0])
    unlabelled = HallucinationPairs(source, 32, 16, 8, labelled=False)[0]
    assert unlabelled["landmarks"].isnan().all() and not bool(unlabelled["labelled"])


def test_hallucination_pairs_bad_input(gen):
    from fastlmk.data import HallucinationPairs, split_labelled
    source = _faces(gen)
    with pytest.raises(ValueError, match="must divide the high-resolution size"):
        HallucinationPairs(source, hr_size=32, net_size=12, lr_size=8)
    with pytest.raises(ValueError, match="lr_size 20 must be at most net_size 16"):
        HallucinationPairs(source, 32, 16, 20)
    with pytest.raises(ValueError, match="source images must be"):
        HallucinationPairs(source, 64, 16, 8)[0]
    labelled, unlabelled = split_labelled(10, 0.3, seed=1)
    assert len(unlabelled) == 3 and sorted(labelled + unlabelled) == list(range(10))
    with pytest.raises(ValueError, match="unlabelled must be in"):
        split_labelled(10, 1.0)


# ------------------------------------------------------------------------------------------- the SHT trainer

SMALL = ["--data", "synthetic:16,6", "--lr-size", "8", "--net-size", "16", "--hr-size", "32", "--batch-size", "4",
         "--channels", "16", "--stacks", "1", "--no-progress"]


def test_views_partner_and_labelled_weights():
    from fastlmk.models.sht_train import _heatmap_targets, _partner, _views
    batch = {"landmarks": torch.arange(2 * 2 * 3 * 2, dtype=torch.float32).view(2, 2, 3, 2),
             "labelled": torch.tensor([True, False])}
    v = _views(batch, torch.device("cpu"))
    assert v["landmarks"].shape == (4, 3, 2) and v["labelled"].tolist() == [True, True, False, False]
    torch.testing.assert_close(_partner(v["landmarks"]), batch["landmarks"].flip(1).flatten(0, 1))
    v["landmarks"][0, 1] = float("nan")  # a missing landmark of a labelled view
    v["landmarks"][2:] = float("nan")  # unlabelled views
    kp, weights = _heatmap_targets(v)
    assert torch.isfinite(kp).all()
    # 0 for unlabelled views and the missing landmark, 1 / (labelled fraction 0.5) elsewhere
    torch.testing.assert_close(weights, torch.tensor([[2.0, 0.0, 2.0], [2.0, 2.0, 2.0], [0.0] * 3, [0.0] * 3]))
    v["labelled"][:] = False
    assert _heatmap_targets(v) == (None, None)


def test_sht_train_eval_predict(tmp_path, capsys):
    """All four stages on a few faces through the command line; every stage's checkpoint and the results;
    ``eval`` of the last checkpoint reproduces the training run's final numbers; ``predict`` on a
    low-resolution face writes the hallucinated face with the landmarks beside it."""
    import json

    from PIL import Image

    from fastlmk.cli import main
    from fastlmk.data import open_dataset
    from fastlmk.models.sht_train import eval_loader, evaluate_sht, load_sht
    out = tmp_path / "run"
    assert main(["train", "--model", "sht", *SMALL, "--stage-epochs", "1", "1", "0", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stage 1 dhln:" in printed and "stage 2 fptn:" in printed and "stage 3" not in printed
    first = json.loads((out / "results.json").read_text())["history"]
    # --resume goes on with the stages not run yet (the data and sizes must be the same)
    with pytest.raises(SystemExit):
        main(["train", "--model", "sht", *SMALL, "--lr-size", "4", "--stage-epochs", "1", "1", "1", "1", "--out",
              str(out), "--resume"])
    assert "has lr_size=8, not 4" in capsys.readouterr().err
    assert main(["train", "--model", "sht", *SMALL, "--stage-epochs", "1", "1", "1", "1", "--out", str(out),
                 "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "stage 1 dhln:" not in printed and "stage 3 sht:" in printed and "stage 4 weak:" in printed
    for name in ("dhln.pt", "fptn.pt", "sht.pt", "weak.pt", "last.pt", "results.json", "hallucinated.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert [h["stage"] for h in results["history"]] == ["dhln", "fptn", "sht", "weak"]
    assert results["history"][:2] == first
    losses = results["history"][2]["losses"]
    assert {"heatmap", "pixel", "gradient", "fptn_adversarial", "fptn_pixel", "fptn_perceptual",
            "discriminator"} <= set(losses) and losses["fptn_perceptual"] > 0
    final = results["final"]
    assert final["count"] == 6 and 0 < final["ssim"] <= 1 and final["psnr"] > 5
    net, cfg, _ = load_sht(out / "last.pt")
    again = evaluate_sht(net, eval_loader(cfg), torch.device("cpu"))
    assert again == pytest.approx(final, rel=1e-6, abs=1e-9)
    assert main(["eval", str(out / "last.pt")]) == 0
    table = capsys.readouterr().out
    assert f"| model | {final['nme_io']:.3f} | {final['nme_wid']:.3f} |" in table and "| bicubic |" in table

    face = open_dataset("synthetic:16,6", "test", size=32)[0]["image"]
    low = F.interpolate(face[None], size=8, mode="bicubic", align_corners=False, antialias=True)[0]
    Image.fromarray((low.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(tmp_path / "lr.png")
    assert main(["predict", str(tmp_path / "lr.png"), "--checkpoint", str(out / "last.pt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    points = torch.tensor([[float(x) for x in line.split()] for line in lines])
    assert points.shape == (68, 2) and torch.isfinite(points).all()
    assert Image.open(tmp_path / "lr_hallucinated.png").size == (256, 256)  # 32 px, drawn 8x


def test_sht_baselines_train(tmp_path, capsys):
    """dhln (one stage; G3 = 0, the gradient-loss ablation) and fan-bicubic (no hallucinated face: PSNR and
    SSIM only for the bicubic row)."""
    import json

    from fastlmk.cli import main
    for model, extra in (("dhln", ["--gamma", "1", "0.01", "0"]), ("fan-bicubic", [])):
        out = tmp_path / model
        assert main(["train", "--model", model, *SMALL, "--epochs", "1", "--out", str(out), *extra]) == 0
        results = json.loads((out / "results.json").read_text())
        assert [h["stage"] for h in results["history"]] == [model]
        assert ("psnr" in results["final"]) == (model == "dhln")
        if model == "dhln":
            assert results["history"][0]["losses"]["gradient"] > 0 and results["config"]["gamma"][2] == 0
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["--model", "sht", "--lr-size", "12", "--stage-epochs", "1", "0", "0", "1"],
     "low-resolution size 12 must divide the network's size 16"),
    (["--model", "sht", "--unlabelled", "0", "--stage-epochs", "1", "0", "0", "1"],
     "the weakly-supervised stage (epochs 1) needs unlabelled faces"),
    (["--model", "sht", "--epochs", "2"], "sht trains in stages: give --stage-epochs"),
    (["--model", "dhln", "--stage-epochs", "1", "1", "1", "1"], "--stage-epochs applies to sht"),
    (["--model", "dhln", "--input-size", "64"], "--input-size does not apply to dhln"),
    (["--model", "dhln", "--hr-size", "24"], "the network's size 16 must divide the high-resolution size 24"),
    (["--model", "sht", "--hr-size", "34", "--net-size", "17", "--lr-size", "17"],
     "the high-resolution size 34 must be a multiple of 4 for FPTN"),
    (["--model", "dhln", "--unlabelled", "1"], "the unlabelled fraction must be in [0, 1), got 1.0"),
    (["--model", "dhln", "--unlabelled-data", "synthetic"], "an unlabelled dataset applies to sht, not dhln"),
])
def test_sht_train_bad_input(tmp_path, capsys, args, message):
    """Each error exits 2 with a message naming the setting, before any training."""
    from fastlmk.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(["train", *SMALL, *args, "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_sht_trains_on_a_real_data_reader(tmp_path, capsys):
    """The pairs come from any reader: a CSV dataset of image files (the synthetic faces saved as PNG, at
    another size than the run's), cropped to the high-resolution size by the reader, trains and evaluates."""
    import json

    from PIL import Image

    from fastlmk.cli import main
    from fastlmk.data import open_dataset
    for split, count in (("train", 8), ("test", 3)):
        faces = open_dataset(f"synthetic:{count},{count}", split, size=48)
        rows = ["image," + ",".join(f"x{i},y{i}" for i in range(68))]
        for i in range(count):
            item = faces[i]
            name = f"{split}{i}.png"
            Image.fromarray((item["image"].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(
                tmp_path / name)
            rows.append(name + "," + ",".join(f"{v:.3f}" for v in item["landmarks"].flatten().tolist()))
        (tmp_path / f"{split}.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert main(["train", "--model", "dhln", *SMALL, "--data", f"csv:{tmp_path}", "--epochs", "1", "--out",
                 str(out)]) == 0
    final = json.loads((out / "results.json").read_text())["final"]
    assert final["count"] == 3 and math.isfinite(final["nme_io"]) and math.isfinite(final["psnr"])
    capsys.readouterr()
