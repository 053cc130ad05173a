"""A floorplan: where the units of every layer sit, and so how long each feedback wire is.

The default places the layers on a line, ``layer_pitch_mm`` apart, each layer a column of units
``unit_pitch_mm`` apart centred on the axis (both pitches are assumptions, not measurements).
A 2-D placement is given as explicit positions per layer. Wires are routed Manhattan-style.

Wire model (see :mod:`hwmodels.cost`): a feedback array sits with its *sending* layer k (its
inputs are that layer's own signals), and each receiving unit i of layer h that has at least one
non-zero synapse in the array gets one wire from the array to it, carrying J_i^h — the value
Baldi et al. (2018, §5) quantize. Its length is the Manhattan distance from the sending layer's
centroid to unit i. A skipped connection (SRBP, L → h) therefore spans L − h layer pitches, a
chained one (BP, RBP) one pitch (Baldi et al. §3.1, last paragraph).

Conv layers. Layer h of a conv net is its pooled maps, C·H·W units placed as any layer's, in
the order of their flattening (channel first, then rows, then columns). Conv layer k's kernel
bank is one crossbar of C_out rows × C_in·k² columns sitting with layer k, like a dense array
(its forward read gathers each window of layer k − 1's maps onto the columns: forward wiring,
which the audit counts for no layer). Read backwards — BP's transposed read of W^k, or RBP's
random bank C^{k→k−1} of the same shape — it takes the error of one window position on its
rows and gives C_in·k² values on its columns, which add up, position by position (col2im), into
the J of the units of layer k − 1 under the window. The adders sit with the bank, as a dense
array's column sums do, so a wire is again one per receiving unit of layer k − 1: each unit that
some position reaches through a column with a non-zero synapse, from layer k's centroid to the
unit (:func:`hwmodels.cost.bank_receivers`). A dense matrix onto a conv layer's maps (a dense
sender at the flatten boundary, SRBP's output) wires each of the C·H·W units as a dense layer.
The max-pool then routes each unit's J to the maximum of its window inside the layer: no wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Floorplan"]


@dataclass(frozen=True)
class Floorplan:
    """Unit positions in mm.

    Parameters
    ----------
    layer_pitch_mm : float
        Distance between neighbouring layers along x (assumed default 1 mm).
    unit_pitch_mm : float
        Distance between neighbouring units of a layer along y (assumed default 10 µm); 0 puts
        every unit of a layer on one point (wire length = layer distance only).
    positions : mapping layer -> array (N_layer, 2), optional
        Explicit 2-D placement of some layers (mm); the others use the line placement.
    """

    layer_pitch_mm: float = 1.0
    unit_pitch_mm: float = 0.01
    positions: Mapping[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("layer_pitch_mm", "unit_pitch_mm"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value!r}: must be a finite length >= 0 (mm)")

    def place(self, layer: int, n: int) -> np.ndarray:
        """Positions (n, 2) in mm of the n units of ``layer``."""
        if layer in self.positions:
            pos = np.asarray(self.positions[layer], dtype=float)
            if pos.shape != (n, 2):
                raise ValueError(f"positions[{layer}].shape={pos.shape}: need ({n}, 2)")
            return pos
        y = (np.arange(n) - (n - 1) / 2.0) * self.unit_pitch_mm
        return np.stack([np.full(n, layer * self.layer_pitch_mm), y], axis=1)

    def centroid(self, layer: int, n: int) -> np.ndarray:
        """Where an array attached to ``layer`` sits: the centroid of its units, (2,)."""
        return self.place(layer, n).mean(axis=0)

    def wires(self, sender: int, n_sender: int, receiver: int, n_receiver: int) -> np.ndarray:
        """Length (mm) of the wire from ``sender``'s array to each unit of ``receiver``, (n,)."""
        start = self.centroid(sender, n_sender)
        return np.abs(self.place(receiver, n_receiver) - start).sum(axis=1)

    def to_dict(self) -> dict:
        return {
            "layer_pitch_mm": self.layer_pitch_mm,
            "unit_pitch_mm": self.unit_pitch_mm,
            "custom_layers": sorted(self.positions),
        }
