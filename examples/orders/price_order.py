#!/usr/bin/env python3
"""A Lambda-style handler run by stepmap as a local command.

Protocol: the event JSON on stdin; success = exit 0 and the result JSON on stdout;
failure = exit 1 and {"errorType", "errorMessage"} on stdout.
"""
import json
import sys

event = json.load(sys.stdin)
if event["quantity"] <= 0:
    json.dump({"errorType": "InvalidOrder", "errorMessage": f"order {event['order_id']} has quantity {event['quantity']}"}, sys.stdout)
    sys.exit(1)
event["total"] = round(event["quantity"] * event["unit_price"], 2)
json.dump(event, sys.stdout)
