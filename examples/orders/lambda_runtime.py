#!/usr/bin/env python3
"""A minimal AWS Lambda custom runtime: lambda_runtime.py MODULE.FUNCTION

It polls the Lambda Runtime API at $AWS_LAMBDA_RUNTIME_API (which stepmap serves for a
function declared with "runtime" in --functions), calls the handler with the event and a small
context, and posts the result or the error. It is what the official runtime interface client
(`python3 -m awslambdaric MODULE.FUNCTION`, from PyPI) does, without the dependency, so that
the example runs on a machine with nothing but Python installed. The process stays warm: one
import, many invocations.
"""
import http.client
import importlib
import json
import os
import sys
import traceback

API = "/2018-06-01/runtime"
# One connection for every request, kept alive as the official client keeps it: a new
# connection per request costs more than a small batch's work.
CONNECTION = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])


def request(method, path, body=None, headers=None):
    """Sends one request on the kept-alive connection; returns (body bytes, headers)."""
    CONNECTION.request(method, f"{API}/{path}", body=body, headers=headers or {})
    response = CONNECTION.getresponse()
    data = response.read()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: HTTP {response.status} {data[:200]!r}")
    return data, response.headers


class Context:
    def __init__(self, headers):
        self.aws_request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self._deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms", "0"))


def post(path, body, headers=None):
    request("POST", path, json.dumps(body, separators=(",", ":")).encode(), headers)


def error_body(error):
    return {"errorMessage": str(error), "errorType": type(error).__name__,
            "stackTrace": traceback.format_tb(error.__traceback__)}


def main():
    module_name, _, function_name = sys.argv[1].rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as error:  # reported to stepmap as Lambda reports an init failure
        post("init/error", error_body(error), {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"})
        sys.exit(1)
    while True:
        data, headers = request("GET", "invocation/next")
        event = json.loads(data)
        context = Context(headers)
        try:
            result = handler(event, context)
        except Exception as error:
            post(f"invocation/{context.aws_request_id}/error", error_body(error))
        else:
            post(f"invocation/{context.aws_request_id}/response", result)


if __name__ == "__main__":
    main()
