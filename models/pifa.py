"""PIFA: pose-invariant face alignment by a cascade of visualization blocks (seed 003, Jourabloo et al.,
Sec. 3.2-3.4, Fig. 2-3, Table 1, losses Eq. 6-7).

The network estimates ``P = (M, p)``: the weak-perspective projection ``M (B, 2, 4)`` (image pixels, y down)
and the 3DMM parameters ``p (B, N_I + N_E)`` of a :class:`~fastlmk.geometry.morphable.MorphableModel`; the 2D
landmarks are ``f(P) = M [S_p(:, b); 1]`` (Eq. 3). Starting from a fixed ``P^0``, block ``i`` renders the
current estimate with the visualization layer (Sec. 3.3, :class:`fastlmk.nn.VisualizationLayer`, i.e. the
fused ``splat`` op), reads it together with the image and the previous block's features, and adds its
estimate ``Delta P^i`` to ``P`` (ResNet-like). Training is end to end: gradients reach every block through
the features and, through the visualization layer, through ``M`` and ``p``.

What is taken from the paper and what is this implementation's choice is listed in :class:`PIFA`.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.visualization import VisualizationLayer, frontal_projection
from .base import LandmarkModel

__all__ = ["PIFA", "PIFABlockOutput", "TABLE_1"]

TABLE_1 = ((12, 16, 5), (20, 24, 3), (28, 32, 3), (36, 40, 3), (40, 40, 3), (40, 40, 3))
"""Seed 003 Table 1: (filters of conv 1, filters of conv 2, kernel size) of visualization blocks 1-6; blocks
beyond the sixth repeat the last entry."""

POOL_BLOCKS = (0, 1)
"""Blocks (0-based) with a 2x2 max pooling after their first conv. The paper pools in block 1 only (GPU
memory); pooling in block 2 as well is this implementation's choice, to keep the CPU cost low: at input 128
the blocks read 128, 64, 32, 32, 32, 32 pixel maps."""

FC_GRID = 8
"""The block's output features are average-pooled to FC_GRID x FC_GRID before the first FC layer (the paper
flattens the full 57x57 maps; at CPU scale that layer would hold 50M weights)."""

FC_HIDDEN = 800
"""Length of the first FC layer (Table 1)."""

DROPOUT = 0.2
"""Dropout after the first FC layer's ReLU (the paper gives no rate)."""

INIT_FILL = 0.6
"""``P^0`` places the mean face's landmarks centred in the crop with the larger side of their bounding box
(the jaw width, for the procedural face) at INIT_FILL times input_size: the mean framing of
``fastlmk.data.SyntheticFaces`` (landmark box 50-70 % of the image, centred within +-10 %), and close to that
of aligned crops of real faces."""

UNIT_FRACTION = 0.05
"""The pixel unit of the model, ``unit = UNIT_FRACTION * input_size`` (6.4 px at 128): the last FC layer
predicts the M part of ``Delta P`` in these units, and the losses measure pixels in them."""

OUTPUT_GAIN = 0.2
"""``Delta M = OUTPUT_GAIN * unit * out[:8]``, ``Delta p = OUTPUT_GAIN * std * out[8:]`` for the last FC
layer's output ``out``. Adam's first steps move all 800 weights of a last FC layer coherently, by lr each;
at gain 1 that overshoots by tens of pixels (the loss triples for a few steps at lr 2e-3). Measured on
``SyntheticFaces`` (1,000 faces, batch 16, Adam 2e-3 with cosine decay, 500 steps): final mean landmark error
5.74 px at gain 1, 4.59 px at 0.2, 4.62 px at 0.1 (13.9 px at P^0)."""

INIT_STD = 1e-3
"""Std of the normal initialisation of each block's last FC layer (bias zero): its output starts at about
1e-2 (``Delta M`` about 1e-3 px at S = 128), so training starts at ``P^0``, while gradients still reach every
layer from the first step (an all-zero layer would block them)."""


class PIFABlockOutput(NamedTuple):
    """What one visualization block returns (``forward`` returns one per block, in order)."""

    M: Tensor
    """(B, 2, 4) the projection after the block's update, ``M^i + Delta M^i``."""
    p: Tensor
    """(B, P) the 3DMM parameters after the block's update."""
    delta_M: Tensor
    """(B, 2, 4) the block's update of M."""
    delta_p: Tensor
    """(B, P) the block's update of p."""
    landmarks: Tensor
    """(B, N, 2) ``f(M, p)`` (Eq. 3) in input pixels."""
    visualization: Tensor
    """(B, 1, r, r) the visualization image the block read (of its input estimate), at its input resolution."""


class _Block(nn.Module):
    """One visualization block (Fig. 3) without its visualization layer: two conv + BN + ReLU (a max pooling
    after the first when ``pool``), then FC (800) + ReLU + dropout, FC (8 + P)."""

    def __init__(self, in_channels: int, c1: int, c2: int, kernel: int, pool: bool, outputs: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, c1, kernel, padding=kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, kernel, padding=kernel // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.pool = pool
        self.fc1 = nn.Linear(c2 * FC_GRID * FC_GRID, FC_HIDDEN)
        self.dropout = nn.Dropout(DROPOUT)
        self.fc2 = nn.Linear(FC_HIDDEN, outputs)
        nn.init.normal_(self.fc2.weight, std=INIT_STD)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.relu(self.bn1(self.conv1(x)))
        if self.pool:
            h = F.max_pool2d(h, 2)
        features = F.relu(self.bn2(self.conv2(h)))
        z = F.adaptive_avg_pool2d(features, FC_GRID).flatten(1)
        return features, self.fc2(self.dropout(F.relu(self.fc1(z))))


class PIFA(LandmarkModel):
    """The PIFA network: ``blocks`` visualization blocks estimating ``P = (M, p)`` (seed 003, Fig. 2-3).

    Args:
        num_landmarks: must equal the morphable model's landmark count (68 for ``procedural()``): the
            landmarks are projected model vertices.
        input_size: side S of the square input crop.
        blocks: number of visualization blocks N_v (6 in the paper).
        morphable: the :class:`~fastlmk.geometry.morphable.MorphableModel`; None (default) is
            ``fastlmk.geometry.morphable.procedural()``. It is not part of ``config``: a model built with
            another morphable model must be given it again when rebuilt from a checkpoint.
        sigma: the Gaussian of the visualization splat (Eq. 10), in pixels of the map it is rendered at.
        backend: the ``splat`` backend (None: by device).

    Architecture (input S = 128; ``TABLE_1``, ``POOL_BLOCKS``):

    - ``P^0``: ``p = 0`` and the frontal ``M^0`` that puts the mean face's landmarks centred in the crop with
      the larger side of their bounding box at ``INIT_FILL * S`` (buffers ``M0``, ``p0``).
    - Block i reads ``[I, F_{i-1}, V_i]`` (the paper's best architecture {I, F, V}, Table 6; block 1 reads
      ``[I, V_1]``) at its input resolution ``r_i``: S for block 1, S/2 for block 2, S/4 for the others.
      ``V_i`` is the visualization layer rendered directly at ``r_i`` (``M`` mapped to that grid, pixel
      centres preserved: ``x_r = a x + (a - 1) / 2`` for ``a = r_i / S``) from the block's input estimate
      ``P^i``; the image is average-pooled to ``r_i`` (and shifted to [-0.5, 0.5]).
    - Two convs with Table 1's filters (block 1: 12 and 16 5x5; 2: 20, 24; 3: 28, 32; 4: 36, 40; 5-6: 40, 40,
      3x3), each + BN + ReLU, a 2x2 max pooling after the first conv of blocks 1 and 2; the output is the
      block's features ``F_i`` (S/2, S/4, S/4, ...).
    - ``F_i`` average-pooled to 8x8, FC 800 + ReLU + dropout (0.2), FC ``8 + P`` (initialised near zero);
      ``Delta M = 0.2 unit * out[:8]`` and ``Delta p = 0.2 std * out[8:]`` (``OUTPUT_GAIN`` times the typical
      spread: ``unit = 0.05 S`` pixels for M, the model's parameter std for p); ``P^{i+1} = P^i + Delta P^i``.

    ``forward(images)`` returns a list of :class:`PIFABlockOutput` (``M``, ``p`` after each block's update,
    the updates, the landmarks, the visualization image), one per block. ``predict`` gives
    ``{"pifa": landmarks of the last block}`` in input pixels.

    ``loss(outputs, batch)``: ``sum_i i * E^i / sum_i i`` (block weights 1..N_v increasing linearly, the
    paper's schedule, normalised to a weighted mean). When the batch has ``"params"`` and ``"camera"``
    (synthetic data), the first ``N_v // 2`` blocks use Eq. 6 and the others Eq. 7, as the paper (3 and 3);
    without them (WFLW, 300W: 2D labels only) every block uses Eq. 7.

    - Eq. 6: ``E_P^i = (Delta P^i - Delta Pbar^i)^T W (Delta P^i - Delta Pbar^i)`` with the target
      ``Delta Pbar^i = Pbar - P^i`` (``P^i`` detached: a target carries no gradient), ``M`` measured in
      ``unit`` pixels, ``W`` diagonal: ``1 / std_k`` for ``p_k`` (the morphable model's ``id_std``,
      ``exp_std``: the spread the synthetic set draws ``p`` from; 1 where a std is not positive), ``1 / r``
      for the six scaled-rotation entries of M and 1 for its two translations, with ``r`` the ratio of the
      mean absolute scaled-rotation entry to the mean absolute translation of the batch's ground-truth
      cameras (detached). Mean over the batch.
    - Eq. 7: ``E_S^i = |f(P^i + Delta P^i) - Ubar|^2`` as the mean over the valid (finite) landmarks of the
      squared distance in ``unit`` pixels; NaN landmarks are ignored. Gradients flow through ``P^i`` too.

    With ``unit = 0.05 S``, a 1-px error and a one-std error of a parameter weigh within 2x of each other in
    Eq. 6 (a one-std p moves landmarks by up to 2 px at S = 128), and the losses are O(1)-O(10) at ``P^0``:
    on ``SyntheticFaces`` 15-20 with the parameters (dominated by the yaw part of M, weighted 1/r, about
    3), about 6 with Eq. 7 alone.
    """

    decoders = ("pifa",)

    def __init__(self, num_landmarks: int = 68, input_size: int = 128, blocks: int = 6, morphable=None,
                 sigma: float = 1.0, backend: Optional[str] = None) -> None:
        super().__init__()
        for name, value, low in (("num_landmarks", num_landmarks, 1), ("input_size", input_size, 16),
                                 ("blocks", blocks, 1)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (math.isfinite(sigma)
                                                                               and sigma > 0):
            raise ValueError(f"sigma must be a finite positive number, got {sigma!r}")
        if morphable is None:
            from ..geometry.morphable import procedural
            morphable = procedural()
        morphable = morphable.to(device="cpu", dtype=torch.float32)
        n = int(morphable.landmarks.shape[0])
        if num_landmarks != n:
            raise ValueError(f"PIFA needs the {n} landmark layout of the morphable model (its landmarks are "
                             f"projected model vertices), got num_landmarks={num_landmarks}")

        self.num_landmarks = num_landmarks
        self.input_size = input_size
        self.num_blocks = blocks
        self.sigma = float(sigma)
        self.config = dict(num_landmarks=num_landmarks, input_size=input_size, blocks=blocks,
                           sigma=float(sigma), backend=backend)
        self.num_params = morphable.num_id + morphable.num_exp
        self.unit = UNIT_FRACTION * input_size

        # f(P) on the landmark vertices only (Eq. 3)
        idx = morphable.landmarks.long()
        bases = torch.cat([morphable.id_basis, morphable.exp_basis])[:, idx]  # (P, N, 3)
        self.register_buffer("lmk_mean", morphable.mean[idx].reshape(-1).clone(), persistent=False)
        self.register_buffer("lmk_bases", bases.reshape(self.num_params, -1).clone(), persistent=False)
        std = torch.cat([morphable.id_std, morphable.exp_std]).clone()
        self.register_buffer("param_std", torch.where(std > 0, std, torch.ones_like(std)), persistent=False)

        # P^0: the mean face's landmarks centred at the typical scale, frontal
        lmk = morphable.mean[idx]
        lo, hi = lmk[:, :2].min(0).values, lmk[:, :2].max(0).values
        scale = INIT_FILL * input_size / float((hi - lo).max())
        mid = (lo + hi) / 2
        centre = (input_size - 1) / 2
        m0 = frontal_projection(torch.zeros(()), scale,
                                (centre - scale * float(mid[0]), centre + scale * float(mid[1])))
        self.register_buffer("M0", m0.float(), persistent=False)
        self.register_buffer("p0", torch.zeros(self.num_params), persistent=False)

        # blocks and their input resolutions (pooling factor 2^k relative to the input)
        specs = [TABLE_1[min(i, len(TABLE_1) - 1)] for i in range(blocks)]
        self.blocks = nn.ModuleList()
        self.factors: list[int] = []
        factor, prev = 1, 0
        for i, (c1, c2, k) in enumerate(specs):
            self.factors.append(factor)
            pool = i in POOL_BLOCKS
            self.blocks.append(_Block(3 + prev + 1, c1, c2, k, pool, 8 + self.num_params))
            factor, prev = factor * (2 if pool else 1), c2
        self.visualize = nn.ModuleDict({
            str(f): VisualizationLayer(morphable, self._size(f), sigma=self.sigma, backend=backend)
            for f in sorted(set(self.factors))})

    # ------------------------------------------------------------------------------------------ helpers

    def _size(self, factor: int) -> int:
        size = self.input_size
        for _ in range(int(math.log2(factor))):
            size //= 2
        return size

    def landmarks_of(self, M: Tensor, p: Tensor) -> Tensor:
        """``f(P) = M [S_p(:, b); 1]`` (Eq. 3): (B, N, 2) landmarks in input pixels, differentiable."""
        shape = torch.addmm(self.lmk_mean, p.to(self.lmk_bases.dtype), self.lmk_bases).view(p.shape[0], -1, 3)
        return shape @ M[:, :, :3].transpose(1, 2) + M[:, None, :, 3]

    def initial(self, batch: int) -> tuple[Tensor, Tensor]:
        """``P^0`` for a batch: (M0 (B, 2, 4), p0 (B, P))."""
        return self.M0.expand(batch, 2, 4), self.p0.expand(batch, self.num_params)

    def _render(self, M: Tensor, p: Tensor, factor: int) -> Tensor:
        if factor != 1:
            a = 1.0 / factor
            shift = torch.tensor([0.0, 0.0, 0.0, (a - 1) / 2], dtype=M.dtype, device=M.device)
            M = a * M + shift
        return self.visualize[str(factor)](M, p)

    # ------------------------------------------------------------------------------------ LandmarkModel

    def forward(self, images: Tensor) -> list[PIFABlockOutput]:
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, S, S), got "
                             f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
        if tuple(images.shape[2:]) != (self.input_size, self.input_size):
            raise ValueError(f"images must be {self.input_size}x{self.input_size} (input_size), got "
                             f"{tuple(images.shape[2:])}")
        b = images.shape[0]
        dtype = self.M0.dtype
        image = images.to(dtype) - 0.5
        pyramid = {1: image}
        M, p = self.initial(b)
        features: Optional[Tensor] = None
        unit = self.unit
        outputs = []
        for block, factor in zip(self.blocks, self.factors):
            if factor not in pyramid:
                pyramid[factor] = F.adaptive_avg_pool2d(image, self._size(factor))
            v = self._render(M, p, factor).to(dtype)
            x = [pyramid[factor], v] if features is None else [pyramid[factor], features, v]
            features, delta = block(torch.cat(x, 1))
            delta_M = (OUTPUT_GAIN * unit * delta[:, :8]).view(b, 2, 4)
            delta_p = OUTPUT_GAIN * delta[:, 8:] * self.param_std
            M, p = M + delta_M, p + delta_p
            outputs.append(PIFABlockOutput(M, p, delta_M, delta_p, self.landmarks_of(M, p), v))
        return outputs

    def predict(self, outputs: list[PIFABlockOutput]) -> dict[str, Tensor]:
        return {"pifa": outputs[-1].landmarks}

    def parameter_loss(self, block_input: tuple[Tensor, Tensor], out: PIFABlockOutput, camera: Tensor,
                       params: Tensor, r: Tensor) -> Tensor:
        """Eq. 6 for one block (mean over the batch); see the class docstring for W and the units."""
        M_in, p_in = block_input
        err_M = (out.delta_M - (camera - M_in.detach())) / self.unit
        err_p = out.delta_p - (params - p_in.detach())
        e = (err_M[:, :, :3].square().sum((1, 2)) / r + err_M[:, :, 3].square().sum(1)
             + (err_p.square() / self.param_std).sum(1))
        return e.mean()

    def landmark_loss(self, out: PIFABlockOutput, landmarks: Tensor) -> Tensor:
        """Eq. 7 for one block: mean squared distance over the finite landmarks, in ``unit`` pixels."""
        valid = torch.isfinite(landmarks).all(-1)  # (B, N)
        target = torch.where(valid[..., None], landmarks, torch.zeros_like(landmarks))
        d2 = ((out.landmarks - target) / self.unit).square().sum(-1)
        return torch.where(valid, d2, torch.zeros_like(d2)).sum() / valid.sum().clamp(min=1)

    def loss(self, outputs: list[PIFABlockOutput], batch: dict[str, Tensor]) -> Tensor:
        if len(outputs) != self.num_blocks:
            raise ValueError(f"outputs must hold {self.num_blocks} blocks, got {len(outputs)}")
        b = outputs[0].M.shape[0]
        dtype, device = outputs[0].M.dtype, outputs[0].M.device
        landmarks = batch["landmarks"].to(device=device, dtype=dtype)
        if landmarks.shape != (b, self.num_landmarks, 2):
            raise ValueError(f"batch['landmarks'] must have shape ({b}, {self.num_landmarks}, 2), got "
                             f"{tuple(landmarks.shape)}")
        has_params = "params" in batch and "camera" in batch
        n_param_blocks = self.num_blocks // 2 if has_params else 0
        if has_params:
            camera = batch["camera"].to(device=device, dtype=dtype)
            params = batch["params"].to(device=device, dtype=dtype)
            if camera.shape != (b, 2, 4):
                raise ValueError(f"batch['camera'] must have shape ({b}, 2, 4), got {tuple(camera.shape)}")
            if params.shape != (b, self.num_params):
                raise ValueError(f"batch['params'] must have shape ({b}, {self.num_params}) (the morphable "
                                 f"model's parameters), got {tuple(params.shape)}")
            r = (camera[:, :, :3].abs().mean() / camera[:, :, 3].abs().mean().clamp(min=1e-6)).clamp(1e-3, 1e3)
        total = outputs[0].M.new_zeros(())
        block_input = self.initial(b)
        for i, out in enumerate(outputs):
            if i < n_param_blocks:
                e = self.parameter_loss(block_input, out, camera, params, r)
            else:
                e = self.landmark_loss(out, landmarks)
            total = total + (i + 1) * e
            block_input = (out.M, out.p)
        return total / (self.num_blocks * (self.num_blocks + 1) / 2)

    def extra_repr(self) -> str:
        sizes = [self._size(f) for f in self.factors]
        return f"input_size={self.input_size}, blocks={self.num_blocks}, block input sizes={sizes}, " \
               f"params=8+{self.num_params}"
