#!/usr/bin/env python3
"""A minimal AWS Lambda custom runtime: lambda_runtime.py MODULE.FUNCTION

It polls the Lambda Runtime API at $AWS_LAMBDA_RUNTIME_API (which stepmap serves for a
function declared with "runtime" in --functions), calls the handler with the event and a small
context, and posts the result or the error. It is what the official runtime interface client
(`python3 -m awslambdaric MODULE.FUNCTION`, from PyPI) does, without the dependency, so that
the example runs on a machine with nothing but Python installed. The process stays warm: one
import, many invocations.
"""
import importlib
import json
import os
import sys
import traceback
import urllib.request

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime"


class Context:
    def __init__(self, headers):
        self.aws_request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self._deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms", "0"))


def post(path, body, headers=None):
    request = urllib.request.Request(f"{API}/{path}", data=json.dumps(body).encode(), method="POST",
                                     headers=headers or {})
    urllib.request.urlopen(request).read()


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
        with urllib.request.urlopen(f"{API}/invocation/next") as response:
            event = json.loads(response.read())
            context = Context(response.headers)
        try:
            result = handler(event, context)
        except Exception as error:
            post(f"invocation/{context.aws_request_id}/error", error_body(error))
        else:
            post(f"invocation/{context.aws_request_id}/response", result)


if __name__ == "__main__":
    main()
