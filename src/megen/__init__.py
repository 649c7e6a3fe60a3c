"""megen: Mobile Edge Generation toolkit.

Generative AI split between edge servers (ES) and user equipment (UE), exchanging compact seeds
(latents) or sketches (coarse images) over noisy wireless links.
"""

__version__ = "0.1.0"
