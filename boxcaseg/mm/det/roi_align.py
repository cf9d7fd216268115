"""RoIAlign for the CPU recipes: torchvision's ``roi_align`` values, bit for bit, in vector code.

Mask R-CNN's RoI extractors pool every sampled RoI (the box head's 7 x 7, the mask head's 14 x
14 bins) with bilinear samples of an FPN level. torchvision's CPU kernel, which the Lite0
configs used (mmcv's misreads NHWC features: :mod:`boxcaseg.mm.memory_format`), is scalar
code: its backward recomputes each sample's four bilinear weights once per channel and adds the
four gradients one float at a time, and on a 2-core CPU it was the largest single op of a demo
Mask R-CNN step after the convolutions (docs/results.md, "Speed").

``GatherRoIAlign`` computes the same thing as row gathers and row scatters of the NHWC feature
map, each row one pixel's channels: the sample grid and weights once per sample
(:func:`roi_align_samples`), the forward as four ``index_select`` row gathers a sample summed
in torchvision's order, the backward as ``index_add_`` of weighted gradient rows in the
order torchvision's loop adds them (RoI, bin row, bin column, sample row, sample column,
corner). The float operations and, for each channel of each pixel, their order are
torchvision's, so forward values and feature gradients are equal bit for bit
(tests/test_roi_align.py: float32 and float64, subnormal gradients, NaN and inf included, up
to the sign of a zero, against torchvision's x86-64 builds, whose CPU code does not fuse
multiply-adds; not half, whose CPU backward torchvision rounds otherwise): a config can switch
to it without changing a figure. Only a fixed
``sampling_ratio`` >= 1 is supported (torchvision's adaptive 0 varies the sample count per RoI);
on a GPU it calls torchvision's CUDA kernel.

mmdet's RoI extractors build their ``roi_layer`` by name from ``mmcv.ops``; importing
:mod:`boxcaseg.mm.det` (the configs' ``custom_imports``) adds this class there, so a config
states ``roi_layer=dict(type='GatherRoIAlign', output_size=7, sampling_ratio=1)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# gradient rows scattered a pass in the backward: bounds the temporary of weighted rows
SCATTER_ROWS = 1 << 15


def _axis_weights(coord: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """torchvision's bilinear_interpolate along one axis: the low and high pixel, their weights
    (high-side ``l``, low-side ``h = 1 - l``) and whether the sample is inside (-1, size]."""
    inside = (coord >= -1.0) & (coord <= size)
    coord = coord.clamp(min=0.0)
    low = coord.floor()  # coord >= 0 here: C's (int) truncation
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    coord = torch.where(at_edge, low, coord)
    high = torch.where(at_edge, low, low + 1)
    high_weight = coord - low
    low_weight = 1.0 - high_weight
    return low.long(), high.long(), high_weight, low_weight, inside


def roi_align_samples(
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    feature_size: tuple[int, int],
) -> tuple[Tensor, Tensor, Tensor]:
    """The rows of the flattened NHWC feature map ``(N * H * W, C)`` each bin sample reads,
    their bilinear weights and whether the sample lies on the map: all ``(R, PH, PW, s, s, 4)``
    (corners in torchvision's order: low-low, low-high, high-low, high-high). A sample outside
    the map reads its image's first pixel with weight 0, as torchvision's does. ``rois``:
    ``(R, 5)`` as (image index, x1, y1, x2, y2) in image pixels. The arithmetic is
    torchvision's, op for op, in the rois' float type."""
    height, width = feature_size
    bins_h, bins_w = output_size
    s = sampling_ratio
    offset = 0.5 if aligned else 0.0
    start_w = rois[:, 1] * spatial_scale - offset
    start_h = rois[:, 2] * spatial_scale - offset
    roi_w = (rois[:, 3] * spatial_scale - offset) - start_w
    roi_h = (rois[:, 4] * spatial_scale - offset) - start_h
    if not aligned:  # the legacy convention: RoIs at least one pixel wide
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h = (roi_h / bins_h)[:, None, None]
    bin_w = (roi_w / bins_w)[:, None, None]
    dtype = rois.dtype
    sample = (torch.arange(s, dtype=dtype) + 0.5)[None, None, :]
    # y = roi_start_h + ph * bin_size_h + (iy + .5f) * bin_size_h / roi_bin_grid_h
    ys = (start_h[:, None, None] + torch.arange(bins_h, dtype=dtype)[None, :, None] * bin_h) + (
        sample * bin_h
    ) / s
    xs = (start_w[:, None, None] + torch.arange(bins_w, dtype=dtype)[None, :, None] * bin_w) + (
        sample * bin_w
    ) / s
    y_low, y_high, ly, hy, y_in = _axis_weights(ys, height)  # (R, PH, s)
    x_low, x_high, lx, hx, x_in = _axis_weights(xs, width)  # (R, PW, s)

    def rows(t: Tensor) -> Tensor:  # (R, PH, s) -> (R, PH, 1, s, 1)
        return t[:, :, None, :, None]

    def cols(t: Tensor) -> Tensor:  # (R, PW, s) -> (R, 1, PW, 1, s)
        return t[:, None, :, None, :]

    weights = torch.stack(
        [
            rows(hy) * cols(hx),
            rows(hy) * cols(lx),
            rows(ly) * cols(hx),
            rows(ly) * cols(lx),
        ],
        dim=-1,
    )
    image = (rois[:, 0].long() * (height * width))[:, None, None, None, None]
    top, bottom = image + rows(y_low) * width, image + rows(y_high) * width
    index = torch.stack(
        [top + cols(x_low), top + cols(x_high), bottom + cols(x_low), bottom + cols(x_high)],
        dim=-1,
    )
    inside = (rows(y_in) & cols(x_in))[..., None].expand_as(index)
    # outside the map torchvision reads the image's first pixel with weight 0 (a NaN or inf
    # there makes the bin NaN) and adds no gradient
    index = torch.where(inside, index, image.unsqueeze(-1).expand_as(index))
    weights = torch.where(inside, weights, torch.zeros_like(weights))
    return index, weights, inside


class _GatherRoIAlignFunction(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        features: Tensor,
        rois: Tensor,
        output_size: tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool,
    ) -> Tensor:
        n, c, h, w = features.shape
        read, weights, inside = roi_align_samples(
            rois, output_size, spatial_scale, sampling_ratio, aligned, (h, w)
        )
        # the backward adds the gradients of samples outside the map to an extra row, dropped
        scatter = torch.where(inside, read, torch.full_like(read, n * h * w))
        num_rois, bins_h, bins_w = read.shape[:3]
        per_bin = sampling_ratio * sampling_ratio
        # NHWC rows: a view when the features are channels_last
        table = features.permute(0, 2, 3, 1).reshape(n * h * w, c)
        read = read.reshape(-1, per_bin, 4)
        weights = weights.reshape(-1, per_bin, 4, 1)
        pooled = None
        for k in range(per_bin):  # output_val += w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4
            corner = [table.index_select(0, read[:, k, j]) for j in range(4)]
            value = weights[:, k, 0] * corner[0] + weights[:, k, 1] * corner[1]
            value = value + weights[:, k, 2] * corner[2]
            value = value + weights[:, k, 3] * corner[3]
            pooled = value if pooled is None else pooled + value
        count = float(per_bin)
        if per_bin > 1:  # output_val /= count (count 1: the division is the identity)
            pooled = pooled / count
        ctx.save_for_backward(scatter.reshape(-1), weights.reshape(-1, per_bin * 4, 1))
        ctx.shape = (n, c, h, w)
        ctx.count = count
        return pooled.reshape(num_rois, bins_h, bins_w, c).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor):  # type: ignore[override]
        index, weights = ctx.saved_tensors
        n, c, h, w = ctx.shape
        grad_rows = grad.permute(0, 2, 3, 1).reshape(-1, 1, c)  # one row a bin
        grad_table = grad.new_zeros(n * h * w + 1, c)
        per_row = weights.shape[1]
        step = max(1, SCATTER_ROWS // per_row)
        # in bin order: each pixel's channels receive their additions in torchvision's order
        for start in range(0, grad_rows.shape[0], step):
            # g = grad_output_this_bin * w / count, in that order (folding 1 / count into w
            # rounds differently once g * w / count is subnormal)
            scaled = grad_rows[start : start + step] * weights[start : start + step]
            if ctx.count != 1.0:
                scaled = scaled / ctx.count
            grad_table.index_add_(
                0, index[start * per_row : (start + step) * per_row], scaled.reshape(-1, c)
            )
        grad_features = grad_table[:-1].reshape(n, h, w, c).permute(0, 3, 1, 2)
        return grad_features, None, None, None, None, None


class GatherRoIAlign(nn.Module):
    """mmcv's ``RoIAlign`` interface (average pooling) with torchvision's values, bit for bit,
    and a vectorised CPU backward: the module docstring."""

    def __init__(
        self,
        output_size: int | tuple[int, int],
        spatial_scale: float = 1.0,
        sampling_ratio: int = 0,
        pool_mode: str = "avg",
        aligned: bool = True,
        use_torchvision: bool = False,
    ) -> None:
        super().__init__()
        if int(sampling_ratio) < 1:
            raise ValueError(
                f"GatherRoIAlign: sampling_ratio {sampling_ratio}; it needs a fixed number of "
                "samples per bin (>= 1, e.g. roi_layer=dict(sampling_ratio=1)): the adaptive 0 "
                "gives every RoI its own count (use type='RoIAlign' for that)"
            )
        if pool_mode != "avg":
            raise ValueError(f"GatherRoIAlign: pool_mode {pool_mode!r}; only 'avg' is supported")
        size = (output_size, output_size) if isinstance(output_size, int) else output_size
        self.output_size = tuple(int(v) for v in size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)

    def forward(self, features: Tensor, rois: Tensor) -> Tensor:
        if features.is_cuda:  # torchvision's CUDA kernel is already parallel
            from torchvision.ops import roi_align

            return roi_align(
                features,
                rois,
                self.output_size,
                self.spatial_scale,
                self.sampling_ratio,
                self.aligned,
            )
        return _GatherRoIAlignFunction.apply(
            features,
            rois.to(features.dtype),
            self.output_size,
            self.spatial_scale,
            self.sampling_ratio,
            self.aligned,
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )


def as_mmcv_roi_align(layers: nn.ModuleList, use_torchvision: bool = True) -> nn.ModuleList:
    """mmcv ``RoIAlign`` layers with the settings of ``layers`` (torchvision's kernel, or
    mmcv's own): the kernels GatherRoIAlign replaces, for comparisons."""
    from mmcv.ops import RoIAlign

    return nn.ModuleList(
        RoIAlign(
            layer.output_size,
            layer.spatial_scale,
            layer.sampling_ratio,
            aligned=layer.aligned,
            use_torchvision=use_torchvision,
        )
        for layer in layers
    )


def register_in_mmcv_ops() -> None:
    """mmdet's RoI extractors look their ``roi_layer`` type up as an attribute of ``mmcv.ops``."""
    from mmcv import ops

    if getattr(ops, "GatherRoIAlign", GatherRoIAlign) is not GatherRoIAlign:
        raise RuntimeError("mmcv.ops.GatherRoIAlign exists already and is not boxcaseg's")
    ops.GatherRoIAlign = GatherRoIAlign
