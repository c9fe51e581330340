#!/usr/bin/env python3
"""Writes an "orders" CSV: gen_orders.py ROWS OUT.csv [--seed N] [--bad-every N].

The columns and value distributions are those of the shared "orders" benchmark
(order_id, customer_id, sku, qty, unit_price, currency, country, status, created_at, note),
deterministic for a seed. With --bad-every N, every N-th row has a quantity that is not a
number ("n/a"), which the example's handler rejects, so that the workflow's tolerated
failure threshold has something to tolerate.
"""
import argparse
import csv
import random
from datetime import datetime, timedelta, timezone

WORDS = ("express", "gift", "fragile", "leave at door", "call first", "back order", "priority",
         'said "urgent"', "second floor, left", "invoice attached", "re-ship", "sample")
COUNTRIES = ("us", "de", "fr", "jp", "br", "in", "gb", "ca", "au", "nl", "se", "mx")
CURRENCIES = ("USD", "EUR", "JPY", "BRL", "INR", "GBP", "CAD", "AUD", "SEK", "MXN")
STATUSES = ("NEW", "PAID", "SHIPPED", "CANCELLED")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bad-every", type=int, default=0, help="make every N-th row invalid (0: none)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["order_id", "customer_id", "sku", "qty", "unit_price", "currency",
                         "country", "status", "created_at", "note"])
        for order_id in range(1, args.rows + 1):
            note = ", ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))[:80].ljust(20, ".")
            # Values are drawn in the order of the shared generator, so the same seed gives the
            # same rows (only a planted bad row differs).
            customer_id = rng.randint(1, 50_000)
            sku = f"SKU-{rng.randint(0, 99_999):05d}"
            qty = rng.randint(1, 10)
            writer.writerow([
                order_id, customer_id, sku,
                "n/a" if args.bad_every and order_id % args.bad_every == 0 else qty,
                f"{rng.randint(100, 99_999) / 100:.2f}", rng.choice(CURRENCIES), rng.choice(COUNTRIES),
                rng.choice(STATUSES),
                (start + timedelta(seconds=rng.randint(0, 365 * 86_400))).strftime("%Y-%m-%dT%H:%M:%SZ"),
                note,
            ])


if __name__ == "__main__":
    main()
