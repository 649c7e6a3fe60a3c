"""System-level simulation (issue 12): a SimPy cell of UEs sharing spectrum and edge servers.

:mod:`~megen.netsim.queue` is the event core validated as one FIFO queue (``megen netsim queue``,
closed forms in :mod:`~megen.netsim.theory`). The cell simulator (``megen netsim``) builds on it:
:mod:`~megen.netsim.config` (the configuration), :mod:`~megen.netsim.radio` (TR 38.901 path loss,
SNR, scheduler goodput), :mod:`~megen.netsim.demand` (per-request demands measured with the engine
and cached; the tiny model's ship in ``measured/``), :mod:`~megen.netsim.batching` (the ES batch
curve), :mod:`~megen.netsim.cell` (the SimPy model), :mod:`~megen.netsim.system` (measures,
stability, service capacity), :mod:`~megen.netsim.runner` (replications, JSON),
:mod:`~megen.netsim.plots` (figures) and :mod:`~megen.netsim.reproduce` (``megen reproduce --preset
netsim``; rows in the results database via :mod:`megen.store.netsim`).
"""
