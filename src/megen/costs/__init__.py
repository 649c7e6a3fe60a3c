"""Costs: FLOPs (measured), device and link profiles, latency and energy."""
