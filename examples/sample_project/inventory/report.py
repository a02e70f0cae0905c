from __future__ import annotations

from .models import Item, Warehouse


def format_item(item: Item) -> str:
    flag = " (low stock)" if item.is_low_stock() else ""
    return f"{item.sku:<10} {item.name:<24} {item.quantity:>5} x {item.unit_price:>8.2f}{flag}"


def stock_report(warehouse: Warehouse) -> str:
    lines = [f"Warehouse: {warehouse.name}", ""]
    for item in sorted(warehouse.items.values(), key=lambda i: i.sku):
        lines.append(format_item(item))
    lines.append("")
    lines.append(f"Total value: {warehouse.total_value():.2f}")
    low = warehouse.low_stock()
    if low:
        lines.append(f"Items to reorder: {', '.join(item.sku for item in low)}")
    return "\n".join(lines)


def restock_plan(warehouse: Warehouse, target: int = 20) -> dict[str, int]:
    plan = {}
    for item in warehouse.low_stock():
        plan[item.sku] = target - item.quantity
    return plan
