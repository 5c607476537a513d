"""Network files of either kind: dispatch on the metadata ``kind`` of a spikezip ``.npz`` file.

Loading an MLP (``spikezip-network``) never imports the transformer description; a
``spikezip-transformer`` file loads as :class:`ir.transformer.VisionTransformer`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from spikezip.ir._io import read_npz_meta
from spikezip.ir.errors import FormatError
from spikezip.ir.network import Network

if TYPE_CHECKING:
    from spikezip.ir.transformer import VisionTransformer

__all__ = ["TRANSFORMER_KIND", "load_network", "network_kind"]

TRANSFORMER_KIND = "spikezip-transformer"


def network_kind(path: str | os.PathLike) -> str | None:
    """The ``kind`` of a spikezip ``.npz`` file's metadata record, or ``None`` if unreadable."""
    try:
        meta = read_npz_meta(path)
    except FormatError:  # unreadable: the loader of the default kind reports the problem
        return None
    kind = meta.get("kind")
    return kind if isinstance(kind, str) else None


def load_network(path: str | os.PathLike) -> Network | VisionTransformer:
    """Load a network file of either kind, dispatching on its metadata ``kind``.

    ``spikezip-transformer`` files give a :class:`~ir.transformer.VisionTransformer`; everything
    else goes to :meth:`ir.Network.load`, whose :class:`~ir.errors.FormatError` names what is
    wrong.
    """
    if network_kind(path) == TRANSFORMER_KIND:
        from spikezip.ir.transformer import VisionTransformer

        return VisionTransformer.load(path)
    return Network.load(path)
