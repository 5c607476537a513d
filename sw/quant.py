"""SpikeZIP-TF's activation quantizer ``MyQuan`` (spec §1.1, §2.1) with LSQ training.

Forward: ``y = clamp(floor(x/s + 0.5), n, p) · s`` — round-half-up, then saturation to the same
``[n, p]`` as the ST-BIF neuron that replaces the quantizer after conversion. The integer code
``clamp(floor(x/s + 0.5), n, p)`` is what the converted network's spike tracer converges to.

Training follows the official code ([Z] ``spike_quan_layer.py`` 362–452, main branch):

* the scale ``s`` is a learned scalar, initialised on the first training batch as
  ``2·mean|x| / √p``;
* its gradient is multiplied by ``1/√(numel(x)·p)`` (LSQ's gradient scale);
* ``floor`` passes its gradient straight through; ``clamp`` passes it only inside ``[n, p]``.

Two deliberate deviations, both outside the range the official code is used in:

* **Odd symmetric levels are rejected.** ``(-L)//2`` makes them lopsided (L = 3 gives [-2, 0],
  spec §8.2); nobody wants that range, and accepting it silently would hide a typo.
  Asymmetric quantizers accept any ``L ≥ 2``.
* **No bypass.** The official ``MyQuan`` is the identity for ``L ≥ 512`` (``pos_max='full'``).
  An identity cannot become an ST-BIF neuron, so here every ``L`` quantizes.

Where ``p = 0`` (symmetric, ``L = 2``: range [-1, 0]), ``|n|`` stands in for ``p`` in the
initialisation and the gradient scale; the official code divides by zero there.

Unlike the official code, the forward value is exact: the gradient scale and the straight-through
floor are autograd functions whose forward is the identity and ``floor``, not
``(a - b).detach() + b`` tricks, which can round differently from ``x/s`` in float arithmetic.
"""

from __future__ import annotations

import math

import torch

__all__ = ["MyQuan", "bounds"]


def bounds(levels: int, symmetric: bool) -> tuple[int, int]:
    """Tracer bounds ``(n, p)`` of a quantizer with ``levels`` levels (spec §1.1).

    Symmetric: ``p = L//2 - 1``, ``n = (-L)//2`` (L = 16 gives [-8, 7]). Asymmetric: ``p = L - 1``,
    ``n = 0`` (L = 16 gives [0, 15]).

    Parameters
    ----------
    levels : int
        Number of quantization levels ``L``; at least 2, even when ``symmetric``.
    symmetric : bool
        Signed range (``True``) or ReLU-like non-negative range (``False``).

    Returns
    -------
    tuple of int
        ``(n, p)`` with ``n ≤ 0 ≤ p`` and ``p - n + 1 == levels``.

    Raises
    ------
    ValueError
        If ``levels`` is below 2, or odd for a symmetric quantizer.
    TypeError
        If ``levels`` is not an integer.
    """
    if isinstance(levels, bool) or not isinstance(levels, int):
        raise TypeError(f"levels must be an integer, not {levels!r}")
    if levels < 2:
        raise ValueError(f"levels must be an integer ≥ 2, not {levels!r}")
    if symmetric:
        if levels % 2:
            raise ValueError(
                f"levels of a symmetric quantizer must be even, not {levels!r} "
                f"(odd levels give the lopsided range [{(-levels) // 2}, {levels // 2 - 1}])"
            )
        return (-levels) // 2, levels // 2 - 1
    return 0, levels - 1


class _FloorSTE(torch.autograd.Function):
    """``floor`` forward, identity backward (the official ``floor_pass``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _GradScale(torch.autograd.Function):
    """Identity forward, gradient multiplied by ``scale`` backward (the official ``grad_scale``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


class MyQuan(torch.nn.Module):
    """Activation quantizer with a learned scale, SpikeZIP-TF's ``MyQuan`` (spec §2.1).

    Parameters
    ----------
    levels : int
        Number of levels ``L``; see :func:`bounds`.
    symmetric : bool
        ``True`` for the signed range ``[(-L)//2, L//2 - 1]``, ``False`` for the ReLU-like
        ``[0, L - 1]``.

    Attributes
    ----------
    s : torch.nn.Parameter
        The learned scale parameter (a scalar); its magnitude :attr:`scale` is the quantizer's
        step and becomes the float threshold θ of the ST-BIF neuron.
    initialized : torch.Tensor
        Boolean buffer; ``False`` until the first training batch has set ``s``. It is part of the
        state dict, so a loaded model is not re-initialised.
    neg_bound, pos_bound : int
        ``n`` and ``p``.
    """

    def __init__(self, levels: int, *, symmetric: bool) -> None:
        super().__init__()
        self.neg_bound, self.pos_bound = bounds(levels, bool(symmetric))
        self.levels = levels
        self.symmetric = bool(symmetric)
        self.s = torch.nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def scale(self) -> torch.Tensor:
        """The step ``|s|``: an optimiser step that carries ``s`` across zero reflects it
        instead of turning the site off (a negative step maps every input of an unsigned site
        to code 0; seen on one machine when training the digits ViT's ``attn`` quantizer). Equal
        to ``s`` while ``s > 0``, so a run that keeps ``s`` positive trains exactly as before."""
        return self.s.abs()

    @property
    def _grad_levels(self) -> int:
        # p in the official code; |n| when p = 0 (symmetric L = 2), where p would divide by zero
        return self.pos_bound if self.pos_bound > 0 else -self.neg_bound

    def extra_repr(self) -> str:
        return (
            f"levels={self.levels}, symmetric={self.symmetric}, "
            f"bounds=[{self.neg_bound}, {self.pos_bound}]"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Quantize ``x``: ``clamp(floor(x/s + 0.5), n, p) · s``.

        In training mode the first call sets ``s = 2·mean|x| / √p`` (once per module lifetime,
        recorded in :attr:`initialized`).
        """
        if self.training and not bool(self.initialized):
            with torch.no_grad():
                init = 2.0 * x.detach().abs().mean() / math.sqrt(self._grad_levels)
                if not bool(torch.isfinite(init)) or float(init) <= 0.0:
                    raise ValueError(
                        "cannot initialise the scale from a first batch whose mean |x| is "
                        f"{float(x.detach().abs().mean())!r}"
                    )
                self.s.copy_(init)
                self.initialized.fill_(True)
        scale = _GradScale.apply(self.s, 1.0 / math.sqrt(x.numel() * self._grad_levels)).abs()
        code = torch.clamp(_FloorSTE.apply(x / scale + 0.5), self.neg_bound, self.pos_bound)
        return code * scale

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Integer codes ``clamp(floor(x/s + 0.5), n, p)`` as ``int64`` (no gradient)."""
        q = torch.floor(x / self.scale + 0.5)
        return torch.clamp(q, self.neg_bound, self.pos_bound).to(torch.int64)
