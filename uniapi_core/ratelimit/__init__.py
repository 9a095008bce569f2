"""Exact sliding-window rate limits, as pure state objects driven by ``now``."""

from .limiter import Admitted, Limiter, Refused, Window

__all__ = ["Admitted", "Limiter", "Refused", "Window"]
