#!/usr/bin/env python3
"""The "orders" bench: stepmap beside the shared peers, in one run.

    python3 benches/orders/run.py [--rows 1000000] [--work-dir DIR] [--stepmap BIN] [--test]

1. Generates the orders CSV with ../shared/peers/gen_orders.py (seed 7): byte for byte the file
   the peers measured (examples/orders/gen_orders.py has the same columns but draws qty before
   customer_id and sku, so its rows differ from the peers' for the same seed).
2. Runs, one after the other, each as a whole process timed from start to exit:
   (a) stepmap-pass: `stepmap run` of a Distributed Map whose ItemProcessor is a Pass state:
       CSV reader, ItemSelector typing the columns with intrinsics, batches of 1,000, one
       EXPRESS child per batch whose Pass outputs `$.Items`, ResultWriter JSONL FLATTEN (one
       line per row). The engine's own overhead; no intrinsic multiplies or upper-cases, so
       this output is not the transformed row and is checked by this script (every order_id
       once, the typed fields equal to the CSV's), not by verify.py;
   (b) stepmap-python: the same job with the shared transform as a warm batch handler
       (examples/orders/handler.py through examples/orders/lambda_runtime.py, a "runtime"
       function with concurrency = cores), checked by ../shared/peers/verify.py;
   (c) duckdb and python: ../shared/peers/baseline_duckdb.py (DuckDB installed by pip into a
       cached venv, ~/.cache/stepmap/bench-venv; reported unavailable, with the reason, when
       it cannot be installed) and baseline_python.py, checked by verify.py.
3. Prints one table: wall time, CPU time (user+sys of the whole process tree), for stepmap the
   engine's own CPU time (reported by `stepmap run`) and its share of the tree's (the
   orchestration overhead; the rest is the handlers'), peak RSS (of the largest single process
   of the tree), verified, and wall-time ratios to DuckDB and to the single-process Python
   baseline.

CPU time is exact for the whole tree: this script makes itself a child subreaper
(PR_SET_CHILD_SUBREAPER), so processes orphaned by a variant (e.g. warm runtimes killed at
exit) are reparented to it and reaped with wait4 like the variant's own process; the variant's
CPU is the sum of those rusages. Peak RSS is the largest ru_maxrss among them, not a sum (Linux
starts a child's ru_maxrss at its parent's RSS, so this script keeps itself small: ~15 MB floor).

Without --stepmap the release binary is built first (`cargo build --release -p stepmap-cli`,
a no-op when fresh). --test (CI): 2,000 rows by default, and a missing DuckDB is reported, not
fatal (as always). The exit code is 1 when a variant that ran failed or was not verified.
"""
import argparse
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "orders")
PEERS = os.path.normpath(os.path.join(REPO, "..", "shared", "peers"))
VENV = os.path.join(os.path.expanduser("~"), ".cache", "stepmap", "bench-venv")
PR_SET_CHILD_SUBREAPER = 36


def log(message):
    print(f"[orders] {message}", file=sys.stderr, flush=True)


def become_subreaper():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError) as error:
        log(f"not a child subreaper ({error}): CPU of orphaned grandchildren is not counted")


def measure(argv, log_path, env=None, cwd=None):
    """Runs argv to completion; returns (exit code, wall s, cpu s, peak RSS MB) of its process tree."""
    with open(log_path, "w") as out:
        start = time.monotonic()
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu, rss_kb = usage.ru_utime + usage.ru_stime, usage.ru_maxrss
    # Orphans of the tree (reparented to this subreaper): reap them, counting their usage.
    deadline, orphans = time.monotonic() + 10, 0
    while True:
        try:
            pid, _, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.monotonic() > deadline:
                log("orphaned processes still running 10 s after the variant exited; not counted")
                break
            time.sleep(0.01)
            continue
        cpu, rss_kb, orphans = cpu + usage.ru_utime + usage.ru_stime, max(rss_kb, usage.ru_maxrss), orphans + 1
    if orphans:
        log(f"reaped {orphans} orphaned process(es) of {os.path.basename(argv[0])}, their CPU counted")
    return process.returncode, wall, cpu, rss_kb / 1024


def stepmap_binary(args):
    if args.stepmap:
        return os.path.abspath(args.stepmap)
    log("building the release binary: cargo build --release -p stepmap-cli")
    built = subprocess.run(
        ["cargo", "build", "--release", "-p", "stepmap-cli", "--bin", "stepmap", "--message-format=json-render-diagnostics"],
        cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
    for line in built.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable") and \
                message["target"]["name"] == "stepmap":
            return message["executable"]
    sys.exit("cargo did not report the stepmap executable")


def duckdb_python(args):
    """The venv's python with duckdb importable, or (None, reason)."""
    python = os.path.join(VENV, "bin", "python")
    if os.path.exists(python) and subprocess.run([python, "-c", "import duckdb"], capture_output=True).returncode == 0:
        return python, None
    log(f"installing duckdb into {VENV}")
    steps = [[sys.executable, "-m", "venv", VENV],
             [python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--timeout", "30", "duckdb"]]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(step[:4])}` timed out"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, f"`{' '.join(step[:4])}` failed: {tail[0]}"
    return python, None


ITEM_READER = {
    "Resource": "arn:aws:states:::s3:getObject",
    "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
    "Parameters": {"Bucket.$": "$.bucket", "Key.$": "$.key"},
}
RESULT_WRITER = {
    "Resource": "arn:aws:states:::s3:putObject",
    "Parameters": {"Bucket.$": "$.bucket", "Prefix.$": "$.resultsPrefix"},
    "WriterConfig": {"OutputType": "JSONL", "Transformation": "FLATTEN"},
}


def workflow(item_selector, processor_state):
    return {
        "Comment": "benches/orders: a Distributed Map over the orders CSV, batches of 1,000, JSONL results",
        "StartAt": "Orders",
        "States": {"Orders": {
            "Type": "Map",
            "ItemReader": ITEM_READER,
            "ItemSelector": item_selector,
            "ItemBatcher": {"MaxItemsPerBatch": 1000},
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                "StartAt": "Process",
                "States": {"Process": dict(processor_state, End=True)},
            },
            "ResultWriter": RESULT_WRITER,
            "ResultPath": "$.results",
            "End": True,
        }},
    }


# (a) every column the transform needs, typed with intrinsics (there is no multiply or upper-case).
PASS_SELECTOR = {
    "order_id.$": "States.StringToJson($$.Map.Item.Value.order_id)",
    "qty.$": "States.StringToJson($$.Map.Item.Value.qty)",
    "unit_price.$": "States.StringToJson($$.Map.Item.Value.unit_price)",
    "country.$": "$$.Map.Item.Value.country",
    "status.$": "$$.Map.Item.Value.status",
}
# (b) as examples/orders/workflow.asl.json: the handler types qty and unit_price itself.
HANDLER_SELECTOR = {
    "order_id.$": "States.StringToJson($$.Map.Item.Value.order_id)",
    "qty.$": "$$.Map.Item.Value.qty",
    "unit_price.$": "$$.Map.Item.Value.unit_price",
    "country.$": "$$.Map.Item.Value.country",
    "status.$": "$$.Map.Item.Value.status",
}


def result_files(data_dir, prefix, verify_dir):
    """Links the ResultWriter's SUCCEEDED_*.json files (JSON Lines) into verify_dir, without the manifest."""
    os.makedirs(verify_dir, exist_ok=True)
    root = os.path.join(data_dir, "orders", prefix)
    for parent, _, names in os.walk(root):
        for name in names:
            if name.startswith("SUCCEEDED_"):
                link = os.path.join(verify_dir, os.path.relpath(parent, root).replace(os.sep, "_") + "_" + name)
                os.symlink(os.path.join(parent, name), link if link.endswith((".json", ".jsonl")) else link + ".jsonl")


def verify_pass(csv_path, out_dir):
    """(a)'s check, in a child process so that this script stays small: a child's ru_maxrss
    starts from its parent's RSS at fork time, which would inflate the next variants' peak RSS."""
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--check-pass", csv_path, out_dir],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return False, (done.stderr or done.stdout).strip()[-300:]
    return True, done.stdout.strip()


def check_pass(csv_path, out_dir):
    """Every CSV row once in out_dir, with the ItemSelector's typed fields. Returns (ok, detail)."""
    import csv
    seen = {}
    for name in sorted(os.listdir(out_dir)):
        with open(os.path.join(out_dir, name)) as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    if row["order_id"] in seen:
                        return False, f"duplicate order_id {row['order_id']}"
                    seen[row["order_id"]] = row
    rows = 0
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            rows += 1
            want = {"order_id": int(row["order_id"]), "qty": int(row["qty"]), "unit_price": float(row["unit_price"]),
                    "country": row["country"], "status": row["status"]}
            if seen.get(want["order_id"]) != want:
                return False, f"order {want['order_id']}: {seen.get(want['order_id'])} != {want}"
    if rows != len(seen):
        return False, f"rows differ: {len(seen)} written, {rows} expected"
    return True, f"{rows} rows, ids and typed fields (own check)"


def verify_peers(csv_path, out_dir):
    done = subprocess.run([sys.executable, os.path.join(PEERS, "verify.py"), csv_path, out_dir],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return False, (done.stderr or done.stdout).strip()[-300:]
    rows, checksum = done.stdout.split()
    return True, f"{rows} rows, sum of totals {checksum} (verify.py)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="rows of the generated CSV (default 1,000,000; 2,000 with --test)")
    parser.add_argument("--work-dir", help="where the CSV and outputs go (default: a fresh directory under /tmp)")
    parser.add_argument("--stepmap", help="the stepmap binary (default: build the release binary with cargo)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="warm handler processes (default: cores)")
    parser.add_argument("--test", action="store_true", help="CI smoke run: small input, no timing claims")
    parser.add_argument("--check-pass", nargs=2, metavar=("CSV", "OUT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.check_pass:
        ok, detail = check_pass(*args.check_pass)
        print(detail)
        sys.exit(0 if ok else 1)
    rows = args.rows or (2000 if args.test else 1_000_000)
    if not os.path.exists(os.path.join(PEERS, "verify.py")):
        sys.exit(f"../shared/peers not found at {PEERS}: the bench needs the shared peers' scripts beside the repo")
    become_subreaper()
    stepmap = stepmap_binary(args)

    work = os.path.abspath(args.work_dir) if args.work_dir else None
    if work:
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
    else:
        import tempfile
        work = tempfile.mkdtemp(prefix=f"stepmap-orders-{rows}-")
    data = os.path.join(work, "data")
    csv_path = os.path.join(data, "orders", "orders.csv")
    os.makedirs(os.path.dirname(csv_path))
    log(f"work dir {work}; generating {rows} rows")
    subprocess.run([sys.executable, os.path.join(PEERS, "gen_orders.py"), str(rows), csv_path], check=True)
    log(f"{csv_path}: {os.path.getsize(csv_path) / 1e6:.1f} MB")

    functions = {"functions": {"transform-orders": {
        "runtime": [sys.executable, os.path.join(EXAMPLE, "lambda_runtime.py"), "handler.handler"],
        "concurrency": args.cores,
        "env": {"PYTHONPATH": EXAMPLE},
    }}}
    files = {
        "pass.asl.json": workflow(PASS_SELECTOR, {"Type": "Pass", "OutputPath": "$.Items"}),
        "python.asl.json": workflow(HANDLER_SELECTOR, {
            "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:transform-orders"}),
        "functions.json": functions,
    }
    for name, document in files.items():
        with open(os.path.join(work, name), "w") as f:
            json.dump(document, f, indent=1)

    def stepmap_run(definition, prefix):
        job = json.dumps({"bucket": "orders", "key": "orders.csv", "resultsPrefix": prefix})
        return [stepmap, "run", os.path.join(work, definition), "--input", job, "--data-dir", data,
                "--functions", os.path.join(work, "functions.json"), "--output", "text"]

    duck, duck_missing = duckdb_python(args)
    variants = [
        ("stepmap-pass", stepmap_run("pass.asl.json", "results-pass"), "results-pass", verify_pass),
        ("stepmap-python", stepmap_run("python.asl.json", "results-python"), "results-python", verify_peers),
        ("duckdb", duck and [duck, os.path.join(PEERS, "baseline_duckdb.py"), csv_path, os.path.join(work, "out-duckdb")],
         None, verify_peers),
        ("python", [sys.executable, os.path.join(PEERS, "baseline_python.py"), csv_path, os.path.join(work, "out-python")],
         None, verify_peers),
    ]
    results = {}
    env = dict(os.environ, STEPMAP_LOG=os.environ.get("STEPMAP_LOG", "warn"))
    for name, argv, prefix, verify in variants:
        if argv is None:
            log(f"{name}: unavailable: {duck_missing}")
            results[name] = {"status": f"unavailable: {duck_missing}"}
            continue
        log(f"{name}: running")
        code, wall, cpu, rss = measure(argv, os.path.join(work, f"{name}.log"), env=env)
        result = {"wall": wall, "cpu": cpu, "rss": rss, "verified": False, "engine": engine_cpu(work, name)}
        if code != 0:
            result["status"] = f"exit {code}, see {os.path.join(work, name + '.log')}"
        else:
            out_dir = os.path.join(work, f"out-{name}")
            if prefix:
                result_files(data, prefix, out_dir)
            result["verified"], result["status"] = verify(csv_path, out_dir)
        log(f"{name}: {wall:.2f} s, {result['status']}")
        results[name] = result

    print_table(rows, os.path.getsize(csv_path), results)
    if any("wall" in r and not r["verified"] for r in results.values()):
        sys.exit(1)


def engine_cpu(work, name):
    """stepmap's own CPU seconds, as `stepmap run` reports it ("engine CPU N ms"), or None."""
    with open(os.path.join(work, f"{name}.log"), errors="replace") as f:
        found = re.search(r"engine CPU (\d+) ms", f.read())
    return int(found.group(1)) / 1000 if found else None


def print_table(rows, size, results):
    load = os.getloadavg()
    print(f"\norders bench: {rows:,} rows ({size / 1e6:.0f} MB), {os.cpu_count()} cores, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end\n")
    print("| variant | wall s | CPU s | engine CPU | peak RSS MB | rows/s | verified | vs DuckDB | vs Python |")
    print("|---|---|---|---|---|---|---|---|---|")

    def ratio(result, base):
        other = results.get(base, {})
        return f"{result['wall'] / other['wall']:.2f}×" if other.get("wall") else "–"

    for name, result in results.items():
        if "wall" not in result:
            print(f"| {name} | – | – | – | – | – | {result['status']} | – | – |")
            continue
        verified = "yes" if result["verified"] else f"NO: {result['status']}"
        engine = result["engine"]
        engine = f"{engine:.2f} ({engine / result['cpu']:.0%})" if engine is not None and result["cpu"] else "–"
        print(f"| {name} | {result['wall']:.2f} | {result['cpu']:.2f} | {engine} | {result['rss']:.0f} | "
              f"{rows / result['wall'] / 1000:.0f}k | {verified} | {ratio(result, 'duckdb')} | {ratio(result, 'python')} |")
    print("\nCPU: user+sys of the process tree; engine CPU: stepmap's own (as `stepmap run` reports it) and its share "
          "of the tree's, the rest being the handlers'; peak RSS: the largest single process; ratios: wall time.")
    for name, result in results.items():
        if result.get("verified"):
            print(f"{name}: {result['status']}")


if __name__ == "__main__":
    main()
