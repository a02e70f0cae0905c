from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Item:
    sku: str
    name: str
    quantity: int = 0
    unit_price: float = 0.0

    def total_value(self) -> float:
        return self.quantity * self.unit_price

    def is_low_stock(self, threshold: int = 5) -> bool:
        return self.quantity < threshold


@dataclass
class Warehouse:
    name: str
    items: dict[str, Item] = field(default_factory=dict)

    def add_item(self, item: Item) -> None:
        if item.sku in self.items:
            self.items[item.sku].quantity += item.quantity
        else:
            self.items[item.sku] = item

    def remove_item(self, sku: str, quantity: int) -> Item:
        item = self.items[sku]
        if quantity > item.quantity:
            raise ValueError(f"cannot remove {quantity} of {sku}: only {item.quantity} left")
        item.quantity -= quantity
        return item

    def find_by_name(self, text: str) -> list[Item]:
        text = text.lower()
        return [item for item in self.items.values() if text in item.name.lower()]

    def low_stock(self, threshold: int = 5) -> list[Item]:
        return [item for item in self.items.values() if item.is_low_stock(threshold)]

    def total_value(self) -> float:
        return sum(item.total_value() for item in self.items.values())
