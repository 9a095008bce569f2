"""Exact sliding-window rate limits, as pure state objects driven by ``now``."""

from .limiter import Admitted, Limiter, Refused, Window
from .scope import limit_scope

__all__ = ["Admitted", "Limiter", "Refused", "Window", "limit_scope"]
