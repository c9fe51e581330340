#!/usr/bin/env python3
"""The orders batch handler, a Lambda-style function that stepmap runs as a local command.

Event: {"Items": [row, ...], "BatchInput": {...}} (a Distributed Map batch). Each row has been
typed by the workflow's ItemSelector. Returns the transformed rows: order_id, upper-cased
country, total = qty x unit_price rounded to 2 places, flag = status is CANCELLED.

Protocol: the event JSON on stdin; success = exit 0 and the result JSON on stdout; failure =
exit 1 and {"errorType", "errorMessage"} on stdout (stepmap surfaces it as AWS surfaces a
Lambda error). A row whose quantity or price is not a number fails its whole batch, as any
error does in a Distributed Map batch; the workflow tolerates a share of such failures.
"""
import json
import sys


def transform(row):
    try:
        qty = int(row["qty"])
        unit_price = float(row["unit_price"])
    except (KeyError, ValueError) as error:
        raise ValueError(f"order {row.get('order_id')}: {error}") from None
    return {
        "order_id": row["order_id"],
        "country": row["country"].upper(),
        "total": round(qty * unit_price, 2),
        "flag": row["status"] == "CANCELLED",
    }


def main():
    event = json.load(sys.stdin)
    try:
        result = [transform(row) for row in event["Items"]]
    except ValueError as error:
        json.dump({"errorType": "InvalidOrder", "errorMessage": str(error)}, sys.stdout)
        sys.exit(1)
    json.dump(result, sys.stdout, separators=(",", ":"))


if __name__ == "__main__":
    main()
