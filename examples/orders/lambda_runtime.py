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
import socket
import sys
import traceback

API = "/2018-06-01/runtime"


class Connection:
    """One kept-alive HTTP/1.1 connection to the Runtime API, as the official client keeps one.

    A few lines of HTTP instead of http.client: its header parsing (the email package) costs
    more per invocation than a small batch's work, where the official client uses native code.
    The Runtime API answers every request with a Content-Length body.
    """

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = address
        self.buffer = b""

    def request(self, method, path, body=b"", headers=None):
        """Sends one request; returns (status, lower-cased headers, body bytes)."""
        lines = [f"{method} {API}/{path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4:]
        status_line, *header_lines = head.split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        fields = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "content-length" not in fields:
            raise RuntimeError(f"{method} {path}: the response has no Content-Length")
        length = int(fields["content-length"])
        while len(self.buffer) < length:
            self._receive()
        data, self.buffer = self.buffer[:length], self.buffer[length:]
        if status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {status} {data[:200]!r}")
        return status, fields, data

    def _receive(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the Runtime API closed the connection")
        self.buffer += chunk


CONNECTION = Connection(os.environ["AWS_LAMBDA_RUNTIME_API"])


class Context:
    def __init__(self, headers):
        self.aws_request_id = headers.get("lambda-runtime-aws-request-id")
        self.invoked_function_arn = headers.get("lambda-runtime-invoked-function-arn")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self._deadline_ms = int(headers.get("lambda-runtime-deadline-ms", "0"))


def post(path, body, headers=None):
    CONNECTION.request("POST", path, json.dumps(body, separators=(",", ":")).encode(), headers)


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
        _, headers, data = CONNECTION.request("GET", "invocation/next")
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
