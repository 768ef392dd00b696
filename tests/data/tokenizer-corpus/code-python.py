#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""A small inventory tool, written for the tokenizer corpus.

It exercises what source code brings to a tokenizer: indentation with spaces
and tabs, operators, f-strings, escapes, numbers in many notations, non-ASCII
identifiers and strings, and long comment lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from collections import defaultdict
from typing import Iterable, Iterator

VERSION = (1, 4, 0)
EPSILON = 1e-9
MAX_ITEMS = 0x7FFF_FFFF
MASK = 0b1010_1010
PERMS = 0o755
PRICE_RE = re.compile(r"^(?P<cur>[$€£¥])\s*(?P<amount>\d{1,3}(?:,\d{3})*(?:\.\d+)?)$")


@dataclasses.dataclass(frozen=True)
class Item:
    sku: str
    name: str
    qty: int = 0
    price: float = 0.0
    tags: tuple[str, ...] = ()

    def total(self) -> float:
        return round(self.qty * self.price, 2)

    def __str__(self) -> str:
        return f"{self.sku:<10} {self.name!r:>24} x{self.qty:>5} @ {self.price:10.2f} = {self.total():>12,.2f}"


class Inventory:
    """Items by SKU; merges duplicates by summing quantities."""

    def __init__(self, items: Iterable[Item] = ()) -> None:
        self._items: dict[str, Item] = {}
        for it in items:
            self.add(it)

    def add(self, item: Item) -> None:
        if item.sku in self._items:
            old = self._items[item.sku]
            if abs(old.price - item.price) > EPSILON:
                raise ValueError(f"price mismatch for {item.sku}: {old.price} != {item.price}")
            item = dataclasses.replace(old, qty=old.qty + item.qty, tags=tuple(sorted({*old.tags, *item.tags})))
        self._items[item.sku] = item

    def __iter__(self) -> Iterator[Item]:
        return iter(sorted(self._items.values(), key=lambda i: (i.name.casefold(), i.sku)))

    def __len__(self) -> int:
        return len(self._items)

    def by_tag(self) -> dict[str, list[str]]:
        out: defaultdict[str, list[str]] = defaultdict(list)
        for it in self:
            for t in it.tags or ("untagged",):
                out[t].append(it.sku)
        return dict(out)

    def value(self) -> float:
        return math.fsum(i.total() for i in self)


def parse_price(text: str) -> float:
    m = PRICE_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a price: {text!r}")
    return float(m["amount"].replace(",", ""))


def load(lines: Iterable[str]) -> Inventory:
    inv = Inventory()
    for n, line in enumerate(lines, start=1):
        line = line.split("#", 1)[0].rstrip()
        if not line:
            continue
        try:
            sku, name, qty, price, *tags = (f.strip() for f in line.split("\t"))
            inv.add(Item(sku, name, int(qty), parse_price(price), tuple(tags)))
        except ValueError as e:
            print(f"line {n}: {e}", file=sys.stderr)
    return inv


SAMPLE = """\
A-001\tWidget, small\t12\t$1.25\thardware\tsmall
A-002\tWidget, large\t3\t$12.50\thardware
B-100\tCafé crème\t40\t€2.80\tfood\tdrinks
B-101\tMatcha 抹茶\t7\t¥1,200\tfood
C-7\tÜbergröße Jacke\t1\t€149.99
C-7\tÜbergröße Jacke\t2\t€149.99\tclothing   # duplicate SKU: merged
D-404\tmissing price\t1\tfree
"""


def main(argv: list[str] | None = None) -> int:
	# Tabs on purpose: some code bases still indent with them.
	ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	ap.add_argument("file", nargs="?", help="tab-separated inventory (default: built-in sample)")
	ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
	args = ap.parse_args(argv)
	text = open(args.file, encoding="utf-8").read() if args.file else SAMPLE
	inv = load(text.splitlines())
	if args.json:
		json.dump({"items": [dataclasses.asdict(i) for i in inv], "value": inv.value()}, sys.stdout, ensure_ascii=False, indent=2)
		print()
	else:
		for it in inv:
			print(it)
		print("-" * 72)
		print(f"{len(inv)} items, value {inv.value():,.2f}; tags: {inv.by_tag()}")
	return 0 if len(inv) else 1


if __name__ == "__main__":
    sys.exit(main())
