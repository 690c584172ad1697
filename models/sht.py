"""SHT (seed 004): the Dual Hallucination Learning Network (section 3.1, Fig. 3), low-resolution landmark
detection with a face-hallucination stream fused into a stacked hourglass, and its loss L_DH (Eqs. 3-4); the
Facial Pose Transfer Network (section 3.2, Fig. 5), its discriminators and losses (Eqs. 5-8).

The input is the low-resolution face resized (bicubic) to the network's size S, as the paper feeds its 16x16
faces resized to 64x64. Both streams run at S x S: per hourglass unit t the landmark stream gives features
P_t (``channels``) and the hallucination stream Q_t (``sr_channels``, a super-resolution module of
``sr_blocks`` SR blocks), fused both ways:

- FUBlock1 (Eq. 1): ``Q'_t = Q_t + Q_t * sigmoid(RB(P_t))``, RB a residual block from P's channels to Q's;
- FUBlock2 (Eq. 2): ``P'_t = P_t + conv(P_t || Q'_t)``;

unit t's heatmaps come from P'_t, and Q'_t feeds the next SR module. The hallucinated face is
``upsample(input) + tail(Q'_T)`` at ``upscale * S`` (the tail: conv, pixel shuffle, conv; the bicubic
residual is our choice, the paper does not say how its last layer is formed; the tail's last conv starts at
0, so that training starts from the bicubic face). ``upscale=4`` with S=64 is the
paper's SHT-M (64x64 in, 256x256 out).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastlmk import ops

from .hourglass import HPMBlock, Hourglass, zero_init

__all__ = ["SRBlock", "FUBlock1", "FUBlock2", "DHLN", "gradient_map", "dhln_loss", "GAMMA", "PATB", "FPTN",
           "PatchDiscriminator", "fptn_losses", "LAMBDA"]

GAMMA = (1.0, 0.01, 0.01)  # (gamma_1, gamma_2, gamma_3) of Eq. 4 for labelled faces (section 4.1)
LAMBDA = (0.05, 0.01, 0.01)  # (lambda_1, lambda_2, lambda_3) of Eq. 5 (section 4.1)


def _check_positive_ints(**values: object) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _resized(maps: Tensor, like: Tensor) -> Tensor:
    """``maps`` at ``like``'s (H, W) (bilinear), as FPTN takes DHLN's heatmaps beside the larger faces."""
    if maps.shape[-2:] == like.shape[-2:]:
        return maps
    return F.interpolate(maps, size=like.shape[-2:], mode="bilinear", align_corners=False)


class SRBlock(nn.Module):
    """A super-resolution block: ``x + conv(relu(conv(x)))`` (3x3 convolutions, as SRResNet's residual blocks
    without batch norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class FUBlock1(nn.Module):
    """Eq. 1: pose attention on the hallucination stream, ``Q' = Q + Q * sigmoid(RB(P))``; RB is a residual
    block ``proj(P) + conv(relu(bn(conv(relu(bn(P))))))`` from ``p_channels`` to ``q_channels``."""

    def __init__(self, p_channels: int, q_channels: int) -> None:
        super().__init__()
        self.rb = nn.Sequential(nn.BatchNorm2d(p_channels), nn.ReLU(), nn.Conv2d(p_channels, q_channels, 3, padding=1),
                                nn.BatchNorm2d(q_channels), nn.ReLU(), nn.Conv2d(q_channels, q_channels, 3, padding=1))
        self.proj = nn.Conv2d(p_channels, q_channels, 1)

    def attention(self, p: Tensor) -> Tensor:
        """RB(P), before the sigmoid."""
        return self.proj(p) + self.rb(p)

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return q + q * torch.sigmoid(self.attention(p))


class FUBlock2(nn.Module):
    """Eq. 2: high-resolution features into the landmark stream, ``P' = P + conv(P || Q')`` (a 3x3 conv of the
    channel concatenation)."""

    def __init__(self, p_channels: int, q_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(p_channels + q_channels, p_channels, 3, padding=1)

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return p + self.conv(torch.cat([p, q], 1))


class DHLN(nn.Module):
    """The two-stream network of Fig. 3 (module docstring). ``forward(images (B, 3, S, S))`` returns
    ``(heatmaps per unit, each (B, num_points, S, S) raw scores, hallucinated faces (B, 3, upscale S,
    upscale S))``. S must be a multiple of ``2 ** depth`` (the hourglasses halve it ``depth`` times).

    The paper's sizes are ``stacks=4, channels=256, sr_channels=64, sr_blocks=4``; the defaults are smaller,
    for a CPU.
    """

    def __init__(self, num_points: int, stacks: int = 2, channels: int = 64, sr_channels: int = 32,
                 sr_blocks: int = 4, depth: int = 3, upscale: int = 2) -> None:
        super().__init__()
        _check_positive_ints(num_points=num_points, stacks=stacks, sr_blocks=sr_blocks, depth=depth,
                             upscale=upscale, sr_channels=sr_channels)
        if channels < 8 or channels % 8:
            raise ValueError(f"channels must be a positive multiple of 8, got {channels!r}")
        self.depth, self.upscale = depth, upscale
        half = channels // 2
        self.stem = nn.Sequential(nn.Conv2d(3, half, 3, padding=1), nn.BatchNorm2d(half), nn.ReLU(),
                                  HPMBlock(half, channels))
        self.sr_stem = nn.Conv2d(3, sr_channels, 3, padding=1)
        self.hourglasses = nn.ModuleList(
            nn.Sequential(Hourglass(depth, channels), HPMBlock(channels, channels), nn.Conv2d(channels, channels, 1),
                          nn.BatchNorm2d(channels), nn.ReLU())
            for _ in range(stacks))
        self.sr_modules = nn.ModuleList(nn.Sequential(*(SRBlock(sr_channels) for _ in range(sr_blocks)))
                                        for _ in range(stacks))
        self.fuse_q = nn.ModuleList(FUBlock1(channels, sr_channels) for _ in range(stacks))
        self.fuse_p = nn.ModuleList(FUBlock2(channels, sr_channels) for _ in range(stacks))
        self.heads = nn.ModuleList(zero_init(nn.Conv2d(channels, num_points, 1)) for _ in range(stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(stacks - 1))
        self.merge_maps = nn.ModuleList(nn.Conv2d(num_points, channels, 1) for _ in range(stacks - 1))
        self.tail = nn.Sequential(nn.Conv2d(sr_channels, 3 * upscale * upscale, 3, padding=1),
                                  nn.PixelShuffle(upscale), zero_init(nn.Conv2d(3, 3, 3, padding=1)))

    def forward(self, images: Tensor) -> tuple[list[Tensor], Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, S, S), got {tuple(images.shape)}")
        step = 2 ** self.depth
        if images.shape[-1] % step or images.shape[-2] % step:
            raise ValueError(f"the input size {tuple(images.shape[-2:])} must be a multiple of 2 ** depth = {step}")
        x, q, maps = self.stem(images), self.sr_stem(images), []
        for t, hourglass in enumerate(self.hourglasses):
            p = hourglass(x)
            q = self.fuse_q[t](p, self.sr_modules[t](q))
            p = self.fuse_p[t](p, q)
            maps.append(self.heads[t](p))
            if t < len(self.merge_features):
                x = x + self.merge_features[t](p) + self.merge_maps[t](maps[-1])
        up = F.interpolate(images, scale_factor=self.upscale, mode="bicubic", align_corners=False)
        return maps, up + self.tail(q)


def gradient_map(images: Tensor, eps: float = 1e-6) -> Tensor:
    """G of Eq. 3, per channel: ``sqrt(gx^2 + gy^2 + eps)`` with the central differences
    ``gx[i, j] = I[i, j+1] - I[i, j-1]`` and ``gy[i, j] = I[i+1, j] - I[i-1, j]`` (zero outside the image), as a
    depthwise convolution with fixed kernels."""
    c = images.shape[1]
    kx = images.new_tensor([[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1).repeat(c, 1, 1, 1)  # (2C, 1, 3, 3): gx, gy per channel
    g = F.conv2d(images, kernels, padding=1, groups=c)
    return torch.sqrt(g[:, 0::2] ** 2 + g[:, 1::2] ** 2 + eps)


def dhln_loss(maps: list[Tensor], hallucinated: Tensor, faces: Tensor, keypoints: Optional[Tensor] = None,
              sigma: float = 1.5, gamma: tuple[float, float, float] = GAMMA,
              weights: Optional[Tensor] = None) -> tuple[Tensor, dict[str, Tensor]]:
    """L_DH (Eq. 4), as means: ``gamma_1 * sum_t mean((H_t - H*)^2) + gamma_2 * mean|I_SR - I_HR| + gamma_3 *
    mean|G(I_SR) - G(I_HR)|``, the heatmap term through ``heatmap_loss`` from ``keypoints`` (B, K, 2) in heatmap
    pixels (no target is rendered; ``weights`` (B, K) as its weights). ``gamma_1 = 0`` is Eq. 10, for faces
    without landmarks: ``keypoints`` may then be None. Returns the loss and its three terms (unweighted)."""
    g1, g2, g3 = (float(v) for v in gamma)
    if g1 and keypoints is None:
        raise ValueError("keypoints are needed when gamma_1 != 0 (gamma_1 = 0 is the loss of unlabelled faces)")
    if hallucinated.shape != faces.shape:
        raise ValueError(f"hallucinated faces {tuple(hallucinated.shape)} and faces {tuple(faces.shape)} must "
                         "have the same shape")
    heat = (sum(ops.heatmap_loss(m, keypoints, sigma, weights=weights) for m in maps) if keypoints is not None
            else hallucinated.new_zeros(()))
    pixel = (hallucinated - faces).abs().mean()
    edge = (gradient_map(hallucinated) - gradient_map(faces)).abs().mean()
    total = g1 * heat + g2 * pixel + g3 * edge
    return total, dict(heatmap=heat, pixel=pixel, gradient=edge)


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout))


class PATB(nn.Module):
    """Pose-attentional transfer block (Zhu et al. 2019, FPTN's unit, section 3.2) on image features F_I and
    pose features F_P: ``A = code_P(F_P)``, ``F_I' = F_I + sigmoid(A) * code_I(F_I)``, ``F_P' = fuse(A || F_I')``,
    each code conv-BN-ReLU-conv-BN and ``fuse`` a 1x1 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.code_p = nn.Sequential(_conv_bn(channels, channels), nn.ReLU(), _conv_bn(channels, channels))
        self.code_i = nn.Sequential(_conv_bn(channels, channels), nn.ReLU(), _conv_bn(channels, channels))
        self.fuse = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, image: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        a = self.code_p(pose)
        image = image + torch.sigmoid(a) * self.code_i(image)
        return image, self.fuse(torch.cat([a, image], 1))


class FPTN(nn.Module):
    """The facial pose transfer generator (Fig. 5): ``forward(I_con (B, 3, S, S), H_con, H_tar (B, K, h, w))``
    gives the face in the target pose (B, 3, S, S). Encoders of the image and of ``H_con || H_tar`` (a 7x7
    conv, then ``downsample`` stride-2 convs), ``blocks`` PATBs, a decoder (``downsample`` transposed convs, a
    7x7 conv); heatmaps of another size than the image are resized to it (bilinear), as DHLN's are half or a
    quarter of its hallucinated face. The output is ``I_con + decoder(...)``: the generator learns the change
    of pose (our choice), with ``I_con`` detached in the sum, so that in SHT, where ``I_con`` is DHLN's
    hallucinated face, the pixel loss against the other view does not pull that face straight towards the
    other pose (DHLN still learns from FPTN through the encoders)."""

    def __init__(self, num_points: int, channels: int = 32, blocks: int = 4, downsample: int = 2) -> None:
        super().__init__()
        _check_positive_ints(num_points=num_points, channels=channels, blocks=blocks)
        self.num_points, self.downsample = num_points, downsample

        def encoder(cin: int) -> nn.Sequential:
            layers = [nn.Conv2d(cin, channels, 7, padding=3), nn.ReLU()]
            for _ in range(downsample):
                layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels), nn.ReLU()]
            return nn.Sequential(*layers)

        self.image_encoder, self.pose_encoder = encoder(3), encoder(2 * num_points)
        self.blocks = nn.ModuleList(PATB(channels) for _ in range(blocks))
        decoder = []
        for _ in range(downsample):
            decoder += [nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1), nn.BatchNorm2d(channels),
                        nn.ReLU()]
        self.decoder = nn.Sequential(*decoder, nn.Conv2d(channels, 3, 7, padding=3))

    def forward(self, image: Tensor, pose: Tensor, target_pose: Tensor) -> Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must have shape (B, 3, S, S), got {tuple(image.shape)}")
        for name, h in (("pose", pose), ("target_pose", target_pose)):
            if h.dim() != 4 or h.shape[:2] != (image.shape[0], self.num_points):
                raise ValueError(f"{name} must have shape (B, K, h, w) = ({image.shape[0]}, {self.num_points}, "
                                 f"h, w), got {tuple(h.shape)}")
        step = 2 ** self.downsample
        if image.shape[-1] % step or image.shape[-2] % step:
            raise ValueError(f"the image size {tuple(image.shape[-2:])} must be a multiple of 2 ** downsample = {step}")
        fi, fp = self.image_encoder(image), self.pose_encoder(_resized(torch.cat([pose, target_pose], 1), image))
        for block in self.blocks:
            fi, fp = block(fi, fp)
        return image.detach() + self.decoder(fi)


class PatchDiscriminator(nn.Module):
    """A PatchGAN discriminator of ``in_channels`` (FPTN's D_A on ``I_con || I``, D_S on ``H_tar || I``):
    ``layers`` 4x4 stride-2 convs with LeakyReLU(0.2), then a 3x3 conv to one logit per patch."""

    def __init__(self, in_channels: int, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        mods, cin = [], in_channels
        for i in range(layers):
            mods += [nn.Conv2d(cin, channels * 2 ** i, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            cin = channels * 2 ** i
        self.net = nn.Sequential(*mods, nn.Conv2d(cin, 1, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def fptn_losses(condition: Tensor, target_pose: Tensor, target: Tensor, generated: Tensor,
                appearance: PatchDiscriminator, shape: PatchDiscriminator, phi: Optional[nn.Module] = None,
                lam: tuple[float, float, float] = LAMBDA) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Eqs. 5-8 for one transfer: ``(generator loss, discriminator loss, terms)``.

    With ``D(x) = sigmoid(logit)``, the discriminators minimise ``-L_GAN`` of Eq. 6, ``-log D_A(I_con || I_tar)
    - log D_S(H_tar || I_tar) - log(1 - D_A(I_con || I_ger)) - log(1 - D_S(H_tar || I_ger))`` (means over the
    patches; the product inside Eq. 6's log is this sum), on ``generated`` detached. The generator minimises
    ``lambda_1 * adversarial + lambda_2 * |I_ger - I_tar| + lambda_3 * |phi(I_ger) - phi(I_tar)|`` (means),
    the adversarial term in the non-saturating form ``-log D_A(I_con || I_ger) - log D_S(H_tar || I_ger)``;
    without ``phi`` the perceptual term is 0. ``target_pose`` is resized to the image as in FPTN.

    The discriminators see ``condition`` and ``target_pose`` detached in every term: they are conditions,
    and in SHT, where DHLN produces them, neither the discriminators' step nor the adversarial term may
    change them to fool a discriminator (our decision; DHLN still learns from FPTN through ``generated``)."""
    if not condition.shape == target.shape == generated.shape:
        raise ValueError(f"condition, target and generated must have one shape, got {tuple(condition.shape)}, "
                         f"{tuple(target.shape)} and {tuple(generated.shape)}")
    target_pose = _resized(target_pose, target)
    bce = F.binary_cross_entropy_with_logits

    def scores(image: Tensor, cond: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        return appearance(torch.cat([cond, image], 1)), shape(torch.cat([pose, image], 1))

    cond, pose = condition.detach(), target_pose.detach()
    real_a, real_s = scores(target, cond, pose)
    fake_a, fake_s = scores(generated.detach(), cond, pose)
    d_loss = (bce(real_a, torch.ones_like(real_a)) + bce(real_s, torch.ones_like(real_s))
              + bce(fake_a, torch.zeros_like(fake_a)) + bce(fake_s, torch.zeros_like(fake_s)))
    gen_a, gen_s = scores(generated, cond, pose)
    adversarial = bce(gen_a, torch.ones_like(gen_a)) + bce(gen_s, torch.ones_like(gen_s))
    pixel = (generated - target).abs().mean()
    perceptual = (phi(generated) - phi(target)).abs().mean() if phi is not None else generated.new_zeros(())
    l1, l2, l3 = (float(v) for v in lam)
    g_loss = l1 * adversarial + l2 * pixel + l3 * perceptual
    return g_loss, d_loss, dict(adversarial=adversarial, pixel=pixel, perceptual=perceptual)
