"""The spiking CNN in RTL: every site of an ``ir.cnn.ConvNet`` a core, wired as its site graph.

Each site is a core (:func:`hw.model.conv_sites.site_spec`): a mapped layer core
(:class:`hw.cores.layer_core.LayerCore` with an input map) for a convolution (an input event is
a list of passes over the output windows it reaches, docs/cnn.md §11), a sum-pool (a depthwise
map: one word per window) and a linear layer (one token of a token map, its weight columns
permuted to read its source core's HWC indices — the Flatten is this index map and nothing
else); the residual merge (:class:`hw.cores.add.AddCore`: a stream merger in front of a layer
core with a merge map, one input port per source); the differential max-pool
(:class:`hw.cores.max_pool.MaxPoolCore`). Every site's stream goes
to each site that reads it through a FIFO (a broadcast first where several do), named and sized
by :func:`hw.model.conv_sites.fifo_names` and :func:`~hw.model.conv_sites.default_fifo_depths`::

    i (image, C order) ─▶ conv1 ─▶ conv2 ⇉ conv3 ─▶ conv4 ─┐
                                     └─────────────────────┴▶ add ─▶ pool ─▶ fc ─▶ o

Neurons of a 3-D site are in HWC order (the hardware trace maps them back to C order,
:func:`hw.model.conv_sites.core_order`). Every core finishes a step from that step's inputs
alone and reads a step only after it emitted the one before, so the graph runs steps and
inferences in a pipeline without deadlock, as the ViT's (docs/transformer.md, "ViT network
top"), provided every FIFO on a skip path into a merge holds a whole step of its producer
(:func:`hw.model.conv_sites.skip_floors`, enforced; docs/cnn.md §13); its exact model is
:mod:`hw.model.cnn_model`. The
last site's marker with busy 0 is ``done``. The FIFO links, ``done``, the counters and the probe
are the site graph's (:mod:`hw.cores.site_graph`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from amaranth.hdl import Module
from amaranth.lib import wiring

from spikezip.hw.cores.add import AddCore
from spikezip.hw.cores.layer_core import LayerCore
from spikezip.hw.cores.max_pool import MaxPoolCore
from spikezip.hw.cores.site_graph import SiteGraph
from spikezip.hw.model import conv_sites
from spikezip.hw.model.add_model import source_formats
from spikezip.hw.model.cycle_model import Pipeline
from spikezip.hw.model.design import DesignParams
from spikezip.hw.model.events import EventFormat
from spikezip.hw.model.pool_model import PoolGeometry
from spikezip.hw.model.vit_sites import SiteSpec
from spikezip.ir.cnn import ConvNet

__all__ = ["CnnCore"]


class CnnCore(SiteGraph):
    """The whole CNN (see the module docstring).

    Parameters
    ----------
    net : ir.cnn.ConvNet
    params : hw.model.design.DesignParams, optional
        Lanes per site (:func:`hw.model.conv_sites.resolve_cnn_lanes`), pipeline, storage and
        FIFO depths; or give them as the keywords below (not both).
    lanes : int or sequence of int, optional
        One value (a conv or sum-pool takes the largest divisor of its channels not above it) or
        one per site; default 8.
    pipeline : hw.model.cycle_model.Pipeline or int, optional
    fifo_depth : int, optional
        Entries of every FIFO (default :func:`hw.model.conv_sites.default_fifo_depths`);
        ``fifo_depths`` sets single FIFOs by name.
    storage : str, optional
    probe : bool
        Add the ``probe`` output for testbenches.

    Members
    -------
    i : In(stream.Signature(event_layout(first site's input format)))
        The image's pixels ``(index, value)`` in C order at step 0, then markers.
    o : Out(stream.Signature(event_layout(last site's output format)))
    done : Out(1)
    cycles, inferences : Out(32)
    counters : Out(32 · 4 · sites)
    probe : Out(probe_width), only with ``probe=True``
    """

    def __new__(
        cls,
        *,
        net: ConvNet,
        params: DesignParams | None = None,
        lanes: int | Sequence[int] | None = None,
        pipeline: Pipeline | int | None = None,
        fifo_depth: int | None = None,
        fifo_depths: Any = None,
        storage: str | None = None,
        probe: bool = False,
    ) -> CnnCore:
        # checked before the object exists (a rejected one leaves no unused elaboratable)
        if not isinstance(net, ConvNet):
            raise TypeError(f"net must be an ir.cnn.ConvNet, not {type(net).__name__}")
        checked = DesignParams.coerce(
            net,
            params,
            lanes=lanes,
            pipeline=pipeline,
            fifo_depth=fifo_depth,
            fifo_depths=fifo_depths,
            storage=storage,
        )
        self = super().__new__(cls, src_loc_at=1)
        self._params = checked
        self._specs = conv_sites.site_specs(net, checked.lanes)
        return self

    def __init__(self, *, net: ConvNet, probe: bool = False, **_: object) -> None:
        self._net, self._probe = net, bool(probe)
        super().__init__(self._members())

    # -- facts ---------------------------------------------------------------------------------
    @property
    def net(self) -> ConvNet:
        return self._net

    @property
    def sites(self) -> dict[str, SiteSpec | PoolGeometry]:
        """Every site's spec (neurons, widths, formats, map) or max-pool geometry, in execution
        order."""
        return dict(self._specs)

    @property
    def params(self) -> DesignParams:
        return self._params

    @property
    def lanes(self) -> tuple[int, ...]:
        return self._params.lanes

    @property
    def cores(self) -> tuple[LayerCore | AddCore | MaxPoolCore, ...]:
        """The site cores, in execution order (built once; the RTL instantiates these)."""
        if not hasattr(self, "_cores"):
            knobs = {"pipeline": self._params.pipeline, "storage": self._params.storage}
            out = []
            for s, spec in zip(self._net.sites, self._specs.values(), strict=True):
                if isinstance(spec, PoolGeometry):
                    out.append(MaxPoolCore(spec))
                elif s.kind == "add":
                    formats = source_formats(self._net, s.layer)
                    out.append(AddCore(site=spec, formats=formats, **knobs))
                else:
                    out.append(LayerCore.for_site(spec, **knobs))
            self._cores = tuple(out)
        return self._cores

    @property
    def layer_cores(self) -> tuple[LayerCore | None, ...]:
        """Per site its layer core (a merge's inner one), None for a max-pool: the cores with
        a weight table."""
        return tuple(
            c.core if isinstance(c, AddCore) else c if isinstance(c, LayerCore) else None
            for c in self.cores
        )

    @property
    def formats(self) -> tuple[EventFormat, ...]:
        """Output event format of every site, in execution order."""
        return tuple(s.output_format for s in self._specs.values())

    @property
    def input_format(self) -> EventFormat:
        return next(iter(self._specs.values())).input_format

    def fifo_entries(self, name: str) -> int:
        return conv_sites.fifo_depth(self._net, self._params, name)

    # -- RTL -----------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        self._fifos, self._fifo_names = [], []
        net, cores = self._net, self.cores
        for s, core in zip(net.sites, cores, strict=True):
            m.submodules["site_" + s.name.replace(".", "_")] = core
        wiring.connect(m, wiring.flipped(self.i), cores[0].i)
        for k in range(net.depth - 1):
            readers = conv_sites.consumers(net, k)
            ports = [_port(cores[c], p) for c, p in readers]
            self.link(m, cores[k].o, ports, net.sites[k].name)
        wiring.connect(m, cores[-1].o, wiring.flipped(self.o))
        self.monitor(m, list(cores))
        return m


def _port(core, port: int):
    """Input ``port`` of a site core: ``i`` (one input), ``i{port}`` of a merge."""
    return getattr(core, f"i{port}") if isinstance(core, AddCore) else core.i
