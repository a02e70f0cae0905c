from __future__ import annotations

import argparse
from pathlib import Path

from .models import Item
from .report import restock_plan, stock_report
from .storage import load_warehouse, save_warehouse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inventory")
    parser.add_argument("path", type=Path)
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add")
    add.add_argument("sku")
    add.add_argument("name")
    add.add_argument("quantity", type=int)
    add.add_argument("unit_price", type=float)
    sub.add_parser("report")
    sub.add_parser("restock")
    args = parser.parse_args(argv)

    warehouse = load_warehouse(args.path)
    if args.command == "add":
        warehouse.add_item(Item(args.sku, args.name, args.quantity, args.unit_price))
        save_warehouse(warehouse, args.path)
    elif args.command == "report":
        print(stock_report(warehouse))
    elif args.command == "restock":
        for sku, quantity in restock_plan(warehouse).items():
            print(f"{sku}: order {quantity}")
    return 0
