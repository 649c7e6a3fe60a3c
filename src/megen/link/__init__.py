"""Wireless link layer: channels, analog and digital transmission, link adaptation.

Import from the modules: :mod:`~megen.link.channels`, :mod:`~megen.link.analog`,
:mod:`~megen.link.digital`, :mod:`~megen.link.modulation`, :mod:`~megen.link.codecs`,
:mod:`~megen.link.mcs`, :mod:`~megen.link.simulate`, :mod:`~megen.link.theory` (the package imports
nothing itself, so the light modules stay light: ``channels`` does not pull in Sionna).

Conventions (details in :mod:`megen.link.channels` and ``docs/channels.md``): links are counted in
complex channel uses; ``snr_db`` is Es/N0 per complex symbol with unit-energy symbols and noise
``CN(0, N0)`` (``N0 / 2`` per real dimension); fading has ``E|h|^2 = 1``.
"""
