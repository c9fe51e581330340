#!/usr/bin/env python3
"""The orders batch handler: an AWS Lambda handler (`handler.handler`), kept warm by stepmap
through the Lambda Runtime API (see functions.json and lambda_runtime.py); `python3 handler.py`
runs it as a one-process-per-call command instead (event on stdin, result on stdout).

Event: {"Items": [row, ...], "BatchInput": {...}} (a Distributed Map batch). Each row has been
typed by the workflow's ItemSelector. Returns the transformed rows: order_id, upper-cased
country, total = qty x unit_price rounded to 2 places, flag = status is CANCELLED.

A row whose quantity or price is not a number raises InvalidOrder, which fails its whole batch
as any error does in a Distributed Map batch; the workflow tolerates a share of such failures.
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


class InvalidOrder(Exception):
    """Lambda reports the exception's class name as the error type."""


def handler(event, context):
    try:
        return [transform(row) for row in event["Items"]]
    except ValueError as error:
        raise InvalidOrder(str(error)) from None


def main():
    """The command protocol: exit 0 with the result, or exit 1 with a Lambda error object."""
    event = json.load(sys.stdin)
    try:
        result = [transform(row) for row in event["Items"]]
    except ValueError as error:
        json.dump({"errorType": "InvalidOrder", "errorMessage": str(error)}, sys.stdout)
        sys.exit(1)
    json.dump(result, sys.stdout, separators=(",", ":"))


if __name__ == "__main__":
    main()
