"""Binary (XNOR) convolution modules (seed 002 chapter 5, Eq. 5.1-5.2; docs/ops.md 4) on
``fastlmk.ops.binary_conv2d``: train with latent float weights and the straight-through estimator, run
``eval()`` on bit-packed weights, and ship the packed form."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .. import _checks
from ..ops.xnor import IntPair, _pair, binary_conv2d, pack_bits
from ..reference import xnor as ref

__all__ = ["BinaryConv2d", "binarize_", "pack_binary_", "sign_ste", "state_dict_bytes"]


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(t: Tensor) -> Tensor:
        return ref.sign(t)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (t,) = ctx.saved_tensors
        return torch.where(t.abs() <= 1, grad, torch.zeros_like(grad))


def sign_ste(t: Tensor) -> Tensor:
    """``sign(t)`` in t's dtype (sign(0) = +1, as ``pack_bits``) with the straight-through estimator as its
    gradient: ``d sign_ste(t) / dt = 1`` where ``|t| <= 1``, else 0."""
    return _SignSTE.apply(t)


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _alpha(w: Tensor) -> Tensor:
    """Eq. 5.2 per output channel, in the kernels' affine dtype (float32 for half-precision weights)."""
    return w.abs().mean(dim=(1, 2, 3), dtype=_checks.compute_dtype(w.dtype))


class BinaryConv2d(nn.Module):
    """``y = conv2d(sign(x), sign(W)) * alpha[o] + bias[o]`` with ``alpha[o] = mean |W[o]|`` (Eq. 5.1-5.2).

    - Training mode: a float convolution of ``sign_ste(x)`` and ``sign_ste(W)``, ``W (O, C/g, KH, KW)`` the
      latent float weight; gradients reach ``x`` and ``W`` through the straight-through estimator and ``W``
      also through ``alpha``. ``padding_mode="zeros"`` pads the sign image with 0, ``"ones"`` with +1.
    - Eval mode: ``fastlmk.ops.binary_conv2d`` on ``pack_bits(W)``, packed once and cached until the weight
      changes (an in-place update such as an optimizer step or ``load_state_dict``, a new tensor,
      ``.to()``, ``train()``/``eval()``; after editing ``weight.data`` in place call ``eval()`` again).
      Takes a float ``(N, C, H, W)`` or a packed ``(N, H, W, ceil(C/64))`` int64 input. Inference only: the
      output carries no gradient. Both modes give the same values in the weight's dtype (float32/float64).
    - ``pack_()`` converts to an inference-only form that stores ``weight_packed`` and ``alpha`` instead of
      ``weight``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair = 1,
                 padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1, bias: bool = False,
                 padding_mode: str = "zeros", backend: Optional[str] = None, device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.in_channels = _positive_int("in_channels", in_channels)
        self.out_channels = _positive_int("out_channels", out_channels)
        self.groups = _positive_int("groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = _pair("stride", stride, 1)
        self.padding = _pair("padding", padding, 0)
        self.dilation = _pair("dilation", dilation, 1)
        self.padding_mode = _checks.choice("padding_mode", padding_mode, ("zeros", "ones"))
        self.backend = backend
        self.packed = False
        self._cache: Optional[tuple[Tensor, int, Tensor, Tensor]] = None
        factory = dict(device=device, dtype=dtype)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"bias={self.bias is not None}, padding_mode={self.padding_mode!r}, packed={self.packed}")

    def train(self, mode: bool = True) -> "BinaryConv2d":
        if mode and self.packed:
            raise RuntimeError("this BinaryConv2d was packed by pack_(): it holds no latent weight and is "
                               "inference-only; train the unpacked model and pack a copy")
        self._cache = None
        return super().train(mode)

    def _apply(self, fn: Any, recurse: bool = True) -> "BinaryConv2d":
        self._cache = None
        return super()._apply(fn, recurse)

    def packed_weight(self) -> tuple[Tensor, Tensor]:
        """``(pack_bits(W), alpha)``: ``(O, KH, KW, ceil(C/g/64))`` int64 and ``(O,)`` in W's dtype (float32 for
        half types), as the eval path uses them (the buffers of a packed module; else cached, repacked when
        ``W`` changed; not cached for inference tensors and under ``torch.compile``)."""
        if self.packed:
            return self.weight_packed, self.alpha
        w = self.weight.detach()
        if torch.compiler.is_compiling() or w.is_inference():  # no version counter to key a cache on
            return pack_bits(w, backend=self.backend), _alpha(w)
        c = self._cache
        # the cache holds an alias of the packed weight, so its storage (and address) cannot be reused
        if (c is None or c[0].data_ptr() != w.data_ptr() or c[1] != w._version or c[0].dtype != w.dtype
                or c[0].device != w.device or c[0].shape != w.shape):
            with torch.no_grad():
                self._cache = c = (w, w._version, pack_bits(w, backend=self.backend), _alpha(w))
        return c[2], c[3]

    def pack_(self) -> "BinaryConv2d":
        """Inference-only form, in place: ``weight`` is replaced by the buffers ``weight_packed`` (int64) and
        ``alpha``, so the state_dict holds those (and ``bias``); the module goes to eval mode and refuses
        ``train()``. Eval outputs are unchanged."""
        if not self.packed:
            packed, alpha = self.packed_weight()
            del self.weight
            self.register_buffer("weight_packed", packed)
            self.register_buffer("alpha", alpha)
            self.packed = True
        return self.train(False)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return self._train_forward(x)
        packed, alpha = self.packed_weight()
        bias = None if self.bias is None else self.bias.detach().to(alpha.dtype)
        y = binary_conv2d(x.detach(), packed, alpha, in_channels=self.in_channels, stride=self.stride,
                          padding=self.padding, dilation=self.dilation, groups=self.groups, bias=bias,
                          padding_mode=self.padding_mode, backend=self.backend)
        return y if self.packed else y.to(self.weight.dtype)  # packed: alpha's dtype

    def _train_forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 4:
            raise TypeError("in training mode x must be a float (N, C, H, W) tensor (packed inputs are for eval())")
        w = self.weight
        alpha = w.abs().mean(dim=(1, 2, 3))
        xs = sign_ste(x).to(w.dtype)  # the sign in x's own dtype, as pack_bits takes it
        dot = ref.sign_conv2d(xs, sign_ste(w), self.stride, self.padding, self.dilation, self.groups,
                              self.padding_mode)
        y = dot * alpha.view(1, -1, 1, 1)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def _module(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _symmetric_padding(conv: nn.Conv2d) -> Optional[tuple[int, int]]:
    if not isinstance(conv.padding, str):
        return conv.padding
    if conv.padding == "valid":
        return (0, 0)
    total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]  # "same"
    return None if any(t % 2 for t in total) else (total[0] // 2, total[1] // 2)


def _binary_from(conv: nn.Conv2d, backend: Optional[str]) -> Optional[BinaryConv2d]:
    if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros":
        return None
    padding = _symmetric_padding(conv)
    if padding is None:
        return None
    w = conv.weight
    layer = BinaryConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, padding, conv.dilation,
                         conv.groups, bias=conv.bias is not None, backend=backend, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.copy_(getattr(conv, name))
            p.requires_grad_(getattr(conv, name).requires_grad)
    return layer.train(conv.training)


def binarize_(model: nn.Module, *, keep_first: bool = True, keep_last: bool = True,
              backend: Optional[str] = None) -> nn.Module:
    """Replaces the ``nn.Conv2d`` layers of ``model`` by ``BinaryConv2d`` with the same hyper-parameters and
    weights (and bias), in place, and returns ``model``.

    The convolution layers (``nn.Conv2d`` and ``BinaryConv2d``) are taken in module registration order;
    the first and the last stay real when ``keep_first``/``keep_last`` (seed 002 5.2.1). Swapped: plain
    ``nn.Conv2d`` (not subclasses) with ``padding_mode="zeros"`` and symmetric padding; others stay as they
    are. ``backend`` is passed to the new layers. A layer registered twice is replaced everywhere.
    """
    model = _module(model)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, BinaryConv2d))]
    kept = {id(convs[0])} if keep_first and convs else set()
    kept |= {id(convs[-1])} if keep_last and convs else set()
    swap = {id(m): layer for m in convs if id(m) not in kept and (layer := _binary_from(m, backend)) is not None}
    if id(model) in swap:
        raise ValueError("model is itself the convolution to binarize; binarize_ replaces submodules in place")
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None and id(child) in swap:
                setattr(parent, name, swap[id(child)])
    return model


def pack_binary_(model: nn.Module) -> nn.Module:
    """``pack_()`` on every ``BinaryConv2d`` of ``model`` (in place) and ``model.eval()``; returns ``model``,
    now inference-only."""
    model = _module(model)
    for m in model.modules():
        if isinstance(m, BinaryConv2d):
            m.pack_()
    return model.train(False)


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of the tensors in ``model.state_dict()`` (to compare a packed model with its float one)."""
    return sum(t.numel() * t.element_size() for t in _module(model).state_dict().values() if isinstance(t, Tensor))
