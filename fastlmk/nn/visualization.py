"""PIFA's visualization layer (seed 003, section 3.3): a 3DMM posed by weak perspective, rendered by
``fastlmk.ops.splat``."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .. import _checks
from ..geometry.morphable import MorphableModel
from ..ops.splat import splat


def frontal_projection(yaw: Tensor, scale: float, center: tuple[float, float], pitch: Optional[Tensor] = None,
                       roll: Optional[Tensor] = None) -> Tensor:
    """Weak-perspective ``M (B, 2, 4)`` for a model with x right, y up, z toward the camera, rotated by
    ``yaw`` (about y), then ``pitch`` (about x), then ``roll`` (in the image plane), in radians, scaled by
    ``scale`` and projected to image pixels (y down) with the model origin at ``center = (x, y)``."""
    yaw = torch.as_tensor(yaw)
    yaw = yaw if yaw.is_floating_point() else yaw.to(torch.get_default_dtype())
    zeros = torch.zeros_like(yaw)
    pitch = zeros if pitch is None else torch.as_tensor(pitch, dtype=yaw.dtype)
    roll = zeros if roll is None else torch.as_tensor(roll, dtype=yaw.dtype)

    def rot(axis: int, angle: Tensor) -> Tensor:
        c, s = torch.cos(angle), torch.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        r = torch.zeros(*angle.shape, 3, 3, dtype=angle.dtype, device=angle.device)
        r[..., axis, axis] = 1
        r[..., i, i], r[..., i, j], r[..., j, i], r[..., j, j] = c, -s, s, c
        return r

    rotation = rot(2, roll) @ rot(0, pitch) @ rot(1, -yaw)  # positive yaw turns the face to image right
    flip = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], dtype=yaw.dtype, device=yaw.device)
    m = torch.zeros(*yaw.shape, 2, 4, dtype=yaw.dtype, device=yaw.device)
    m[..., :3] = scale * flip @ rotation
    m[..., 0, 3], m[..., 1, 3] = center
    return m


class VisualizationLayer(nn.Module):
    """``V = splat(M S_p, value = g a)`` (seed 003 Eq. 1, 3-5, 8-11) as an image (B, 1, H, W).

    - ``S_p = S_0 + sum_k p_k S_k`` (Eq. 1), ``p (B, N_I + N_E)`` identity then expression parameters.
    - ``(x, y) = M (S_p; 1)`` with ``M (B, 2, 4)`` mapping model coordinates to image pixels, y down
      (Eq. 3-5; ``frontal_projection`` builds one).
    - Frontability ``g = max(0, n . N_0)`` with the unit viewing direction ``n = -(m_1 x m_2) / (|m_1| |m_2|)``
      and the mean-face normals ``N_0`` (Eq. 8). The minus sign is Eq. 8 written for image rows that grow
      downward: in the paper's y-up image frame ``m_2`` has the opposite sign and ``n = m_1 x m_2 / ...``.
    - ``value = g a`` with the model's mask ``a`` (Eq. 11); vertices with ``g = 0`` are pruned, and depth
      ``-n . S_p`` decides visibility in ``splat``.

    Gradients reach ``M`` (through the projection and ``g``) and ``p`` (through the projection). ``sigma``,
    ``radius`` and ``backend`` are passed to ``fastlmk.ops.splat``.
    """

    def __init__(self, model: "MorphableModel", size: int | tuple[int, int], sigma: float = 1.0,
                 radius: Optional[float] = None, backend: Optional[str] = None) -> None:
        super().__init__()
        self.size = _checks.size2(size)
        self.sigma = _checks.positive_float("sigma", sigma)
        self.radius = None if radius is None else _checks.nonneg_float("radius", radius)
        self.backend = backend
        self.num_params = model.num_id + model.num_exp
        bases = torch.cat([model.id_basis, model.exp_basis]).reshape(self.num_params, -1)
        self.register_buffer("mean", model.mean.reshape(-1).clone(), persistent=False)
        self.register_buffer("bases", bases.clone(), persistent=False)
        self.register_buffer("normals", model.normals.clone(), persistent=False)
        self.register_buffer("mask", model.mask.clone(), persistent=False)

    def shape(self, p: Optional[Tensor], batch: int) -> Tensor:
        """``S_p`` (B, Q, 3) for parameters ``p (B, N_I + N_E)`` (None: the mean shape)."""
        if p is None:
            return self.mean.view(1, -1, 3).expand(batch, -1, -1)
        if p.dim() != 2 or p.shape != (batch, self.num_params):
            raise ValueError(f"p must have shape (B, N_I + N_E) = ({batch}, {self.num_params}), got {tuple(p.shape)}")
        return torch.addmm(self.mean, p.to(self.bases.dtype), self.bases).view(batch, -1, 3)

    def forward(self, M: Tensor, p: Optional[Tensor] = None) -> Tensor:
        _checks.floating("M", M)
        if M.dim() != 3 or M.shape[1:] != (2, 4):
            raise ValueError(f"M must have shape (B, 2, 4), got {tuple(M.shape)}")
        M = M.to(self.mean.dtype)
        shape = self.shape(p, M.shape[0])
        xy = shape @ M[:, :, :3].transpose(1, 2) + M[:, None, :, 3]
        m1, m2 = M[:, 0, :3], M[:, 1, :3]
        view = -torch.linalg.cross(m1, m2) / (m1.norm(dim=1) * m2.norm(dim=1))[:, None]
        g = torch.relu(self.normals @ view.T).T  # (B, Q)
        depth = torch.where(g > 0, -(shape @ view[:, :, None]).squeeze(2), torch.full_like(g, math.inf))
        return splat(xy, depth.detach(), g * self.mask, self.size, sigma=self.sigma, radius=self.radius,
                     backend=self.backend)
