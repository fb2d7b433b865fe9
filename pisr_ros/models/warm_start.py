"""Start a PISR model from a trained base Panoptic-DeepLab.

A PISR model is a base model plus the PISR module and a second set of heads that read
``[decoder features, F_pan]``. From a base checkpoint we copy the backbone, the decoders and
the heads (which become PISR's intermediate heads), and copy the heads once more into the
final heads with the extra F_pan inputs switched off: the new input columns of each final
head's first pointwise conv start at zero. At step 0 the warm-started model therefore
predicts exactly what the base model predicts, and training only has to learn what PISR adds.
Training PISR from scratch on the CPU budget did not learn semantics at all (docs/ablation.md).

With ``pisr.fusion: residual`` there are no final heads: the copied heads give the intermediate
outputs, and the refine head, whose corrections are added to them, starts with its last layer at
zero, so again step 0 predicts what the base predicts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

FINAL_PREFIX = "final_"


@dataclass
class WarmStartReport:
    copied: list[str] = field(default_factory=list)  # same name and shape
    widened: list[str] = field(default_factory=list)  # base tensor in a leading slice
    fresh: list[str] = field(default_factory=list)  # no counterpart in the base: left as built
    silenced: list[str] = field(default_factory=list)  # fresh, but set to zero (refine head's last layer)

    def summary(self) -> str:
        widened = f", {len(self.widened)} widened (final heads: F_pan inputs start at zero)" if self.widened else ""
        silent = "; the refine head's last layer starts at zero" if self.silenced else ""
        return f"warm start: {len(self.copied)} tensors copied{widened}, {len(self.fresh)} new (PISR{silent})"


def _source_name(name: str, base: dict) -> str | None:
    if name in base:
        return name
    if name.startswith(FINAL_PREFIX) and name[len(FINAL_PREFIX):] in base:
        return name[len(FINAL_PREFIX):]
    return None


def _widen(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor | None:
    """``source`` in the leading slice of a copy of ``target`` along the one dimension where it
    is smaller; None when the shapes do not fit that way. Along dimension 1 (a conv's input
    channels) the rest is zeroed so that the new inputs start silent; along dimension 0
    (depthwise filters, BatchNorm statistics of the new channels) it keeps its initial values,
    which only act on those silent inputs."""
    if target.dim() != source.dim():
        return None
    grown = [d for d in range(target.dim()) if target.shape[d] != source.shape[d]]
    if len(grown) != 1 or target.shape[grown[0]] < source.shape[grown[0]]:
        return None
    dim = grown[0]
    out = target.clone()
    if dim == 1:
        out.zero_()
    out.narrow(dim, 0, source.shape[dim]).copy_(source)
    return out


def warm_start(model: nn.Module, base_state: dict[str, torch.Tensor]) -> WarmStartReport:
    """Load ``base_state`` (a base model's state dict) into the PISR ``model`` as described
    above. Raises ValueError when a tensor of the base fits nowhere: then the two specs differ
    in more than PISR (another backbone or decoder width), and a warm start would be silently
    partial."""
    report = WarmStartReport()
    state = model.state_dict()
    used = set()
    for name, tensor in state.items():
        src_name = _source_name(name, base_state)
        if src_name is None:
            report.fresh.append(name)
            continue
        source = base_state[src_name].to(tensor.dtype)
        used.add(src_name)
        if source.shape == tensor.shape:
            state[name] = source.clone()
            report.copied.append(name)
            continue
        widened = _widen(tensor, source)
        if widened is None:
            raise ValueError(f"warm start: {src_name} {tuple(source.shape)} does not fit {name} "
                             f"{tuple(tensor.shape)}; the base spec must match the PISR spec except for PISR")
        state[name] = widened
        report.widened.append(name)
    unused = sorted(set(base_state) - used)
    if unused:
        raise ValueError(f"warm start: base weights with no place in the model: {', '.join(unused[:8])}"
                         + (f" (+{len(unused) - 8} more)" if len(unused) > 8 else ""))
    # A residual PISR model (pisr.fusion: residual) has no final heads to copy: its refine head
    # adds corrections to the copied heads' outputs, and starts silent by a zero last layer.
    for name in _last_layer_names(model, "refine_head"):
        state[name] = torch.zeros_like(state[name])
        report.silenced.append(name)
    model.load_state_dict(state)
    return report


def _last_layer_names(model: nn.Module, head: str) -> list[str]:
    module = getattr(model, head, None)
    if module is None:
        return []
    index = len(module) - 1
    return [f"{head}.{index}.{p}" for p, _ in module[index].named_parameters()]
