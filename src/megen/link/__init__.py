"""Wireless link layer: channels, analog and digital transmission, link adaptation.

Conventions (details in :mod:`megen.link.channels` and ``docs/channels.md``): links are counted in
complex channel uses; ``snr_db`` is Es/N0 per complex symbol with unit-energy symbols and noise
``CN(0, N0)`` (``N0 / 2`` per real dimension); fading has ``E|h|^2 = 1``.
"""

from megen.link.analog import SIDE_INFO_BITS_PER_ITEM, AnalogResult, analog_channel_uses, transmit_analog
from megen.link.channels import (
    ChannelConfig,
    SymbolTransmission,
    channel_uses_for,
    ebno_db_to_snr_db,
    pilot_symbols_for,
    snr_db_to_ebno_db,
    transmit_symbols,
)
from megen.link.codecs import (
    FALLBACK_PIXEL,
    IMAGE_CODECS,
    ImageLinkResult,
    QuantizedLinkResult,
    QuantizedTensor,
    decode_image,
    encode_image,
    quantize,
    send_image_digital,
    send_tensor_quantized,
)
from megen.link.digital import (
    LENGTH_HEADER_BITS,
    DigitalResult,
    TransportResult,
    send_bytes,
    send_bytes_batch,
    transmit_bits,
)
from megen.link.mcs import MCS_TABLE, McsChoice, select_mcs
from megen.link.modulation import MODULATIONS, Mcs
from megen.link.simulate import LinkStats, simulate_link

__all__ = [
    "FALLBACK_PIXEL",
    "IMAGE_CODECS",
    "LENGTH_HEADER_BITS",
    "MCS_TABLE",
    "MODULATIONS",
    "SIDE_INFO_BITS_PER_ITEM",
    "AnalogResult",
    "ChannelConfig",
    "DigitalResult",
    "ImageLinkResult",
    "LinkStats",
    "Mcs",
    "McsChoice",
    "QuantizedLinkResult",
    "QuantizedTensor",
    "SymbolTransmission",
    "TransportResult",
    "analog_channel_uses",
    "channel_uses_for",
    "decode_image",
    "ebno_db_to_snr_db",
    "encode_image",
    "pilot_symbols_for",
    "quantize",
    "select_mcs",
    "send_bytes",
    "send_bytes_batch",
    "send_image_digital",
    "send_tensor_quantized",
    "simulate_link",
    "snr_db_to_ebno_db",
    "transmit_analog",
    "transmit_bits",
    "transmit_symbols",
]
