"""Network files of any kind: dispatch on the metadata ``kind`` of a spikezip ``.npz`` file.

Loading an MLP (``spikezip-network``) never imports the transformer description; a
``spikezip-transformer`` file loads as :class:`ir.transformer.VisionTransformer`, a
``spikezip-cnn`` file as :class:`ir.cnn.ConvNet`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from spikezip.ir._io import read_npz_meta
from spikezip.ir.errors import FormatError
from spikezip.ir.network import Network

if TYPE_CHECKING:
    from spikezip.ir.cnn import ConvNet
    from spikezip.ir.transformer import VisionTransformer

__all__ = ["CNN_KIND", "TRANSFORMER_KIND", "load_network", "network_kind"]

TRANSFORMER_KIND = "spikezip-transformer"
CNN_KIND = "spikezip-cnn"


def network_kind(path: str | os.PathLike) -> str | None:
    """The ``kind`` of a spikezip ``.npz`` file's metadata record, or ``None`` if unreadable."""
    try:
        meta = read_npz_meta(path)
    except FormatError:  # unreadable: the loader of the default kind reports the problem
        return None
    kind = meta.get("kind")
    return kind if isinstance(kind, str) else None


def load_network(path: str | os.PathLike) -> Network | VisionTransformer | ConvNet:
    """Load a network file of any kind, dispatching on its metadata ``kind``.

    ``spikezip-transformer`` files give a :class:`~ir.transformer.VisionTransformer`,
    ``spikezip-cnn`` files a :class:`~ir.cnn.ConvNet`; everything
    else goes to :meth:`ir.Network.load`, whose :class:`~ir.errors.FormatError` names what is
    wrong.
    """
    kind = network_kind(path)
    if kind == TRANSFORMER_KIND:
        from spikezip.ir.transformer import VisionTransformer

        return VisionTransformer.load(path)
    if kind == CNN_KIND:
        from spikezip.ir.cnn import ConvNet

        return ConvNet.load(path)
    return Network.load(path)
