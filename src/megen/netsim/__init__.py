"""System-level simulation (issue 12): a SimPy event core, validated as a single queue first.

:mod:`megen.netsim.queue` simulates one FIFO queue with ``C`` servers (``megen netsim queue``) and
:mod:`megen.netsim.theory` holds the closed forms it is checked against (M/M/1, M/D/1, M/M/c with
Erlang C, M/G/1 with Pollaczek-Khinchine). The cell/edge-server simulator will build on this core.
"""
