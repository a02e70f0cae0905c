"""A tiny inventory tracker."""

from .models import Item, Warehouse
from .storage import load_warehouse, save_warehouse

__all__ = ["Item", "Warehouse", "load_warehouse", "save_warehouse"]
