from __future__ import annotations

import json
from pathlib import Path

from .models import Item, Warehouse


def warehouse_to_dict(warehouse: Warehouse) -> dict:
    return {
        "name": warehouse.name,
        "items": [
            {
                "sku": item.sku,
                "name": item.name,
                "quantity": item.quantity,
                "unit_price": item.unit_price,
            }
            for item in warehouse.items.values()
        ],
    }


def warehouse_from_dict(data: dict) -> Warehouse:
    warehouse = Warehouse(name=data["name"])
    for raw in data.get("items", []):
        warehouse.add_item(Item(**raw))
    return warehouse


def save_warehouse(warehouse: Warehouse, path: Path) -> None:
    path.write_text(json.dumps(warehouse_to_dict(warehouse), indent=2), encoding="utf-8")


def load_warehouse(path: Path) -> Warehouse:
    return warehouse_from_dict(json.loads(path.read_text(encoding="utf-8")))
