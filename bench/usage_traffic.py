#!/usr/bin/env python3
"""Usage reporting traffic (issue 19): one Envoy sends every one of 10,000 long-lived keys in
every report interval, and the bytes its reporter sends keyservice are counted.

keygate (`usage`, `report_every_seconds` 10, `max_keys` 10,000) reports to the real keyservice
through a cluster of its own (`keyservice_usage`), so Envoy's counters of that cluster are the
reporting traffic and nothing else: requests, bytes sent and received. The revocation answers come
from a stand-in Envoy that says "active" to every key (as `make bench-memory`), so the 10,000 keys
cost one callout each and are then cached; wrk sends them in turn, fast enough that each is used
in every interval. Measured over whole intervals after the first report; keyservice must have
applied every report (its own counter) and the edge dropped nothing (`keygate.usage_dropped`).

    python3 bench/usage_traffic.py            # what `make bench-usage` runs
    python3 bench/usage_traffic.py --quick    # 2,000 keys, three intervals

The section goes into BENCHMARKS.md between its markers; the numbers also to
target/bench/usage.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as b  # noqa: E402

BEGIN = "<!-- usage traffic: begin -->"
END = "<!-- usage traffic: end -->"
INTERVAL_S = 10


def keygate_config(keys: int) -> str:
    return json.dumps({
        "secret": {"env": "JWT_SECRET"},
        "revocation": {"cluster": "keyservice", "cache": {"max_active_seconds": 3600}},
        "usage": {"cluster": "keyservice_usage", "report_every_seconds": INTERVAL_S,
                  "max_keys": keys},
    })


def keyservice_metric(addr: str, series: str) -> float:
    _, body = b.http(f"http://{addr}/metrics")
    for line in body.decode(errors="replace").splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def counters(envoy) -> dict:
    names = ["cluster.keyservice_usage.upstream_rq_total",
             "cluster.keyservice_usage.upstream_cx_tx_bytes_total",
             "cluster.keyservice_usage.upstream_cx_rx_bytes_total",
             "wasmcustom.keygate.usage_reports_ok", "wasmcustom.keygate.usage_reports_error",
             "wasmcustom.keygate.requests_allowed"]
    return {name: b.envoy_counter(envoy, name) or 0 for name in names}


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 keys, three intervals")
    parser.add_argument("--keys", type=int, help="distinct keys (default 10000)")
    parser.add_argument("--intervals", type=int, help="report intervals measured (default 6)")
    parser.add_argument("--out", type=Path, default=b.ROOT / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=b.ROOT / "target/bench/usage.json")
    args = parser.parse_args(argv)
    keys = args.keys or (2000 if args.quick else 10_000)
    intervals = args.intervals or (3 if args.quick else 6)

    def log(message: str) -> None:
        print(f"[usage] {message}", file=sys.stderr, flush=True)

    envoy_bin = b.binary("ENVOY_BIN", b.ROOT / ".venv/bin/envoy", "Envoy (`make tools`)")
    wasm = b.binary("KEYGATE_WASM", b.ROOT / "target/wasm32-wasip1/release/keygate.wasm",
                    "the filter (`make wasm`)")
    keyservice_bin = b.binary("KEYSERVICE_BIN", b.default_keyservice(), "keyservice")
    wrk = shutil.which(os.environ.get("WRK", "wrk")) or ""
    if not wrk:
        raise b.BenchError("wrk is missing: `make bench-tools` installs it")
    work = Path(tempfile.mkdtemp(prefix="keygate-usage-"))
    procs = b.Processes()
    try:
        _, keyservice = b.start_keyservice(procs, keyservice_bin, "1", work, authorize=False)
        stub_path = work / "stub.json"
        stub_path.write_text(json.dumps(b.stub_revocation_bootstrap()))
        stub = procs.start(["taskset", "-c", "1", envoy_bin, "-c", stub_path, "--concurrency", "1",
                            "--use-dynamic-base-id", "--admin-address-path", work / "stub.admin",
                            "-l", "warn"], work / "stub.log")
        stub_config = b.Config("stub", "-", "revocation stand-in", None, None)
        stub_envoy = b.envoy_ready(stub_config, stub, work / "stub.admin", work / "stub.log")

        host, port = keyservice.split(":")
        clusters = [b.static_cluster("keyservice", "127.0.0.1", stub_envoy.port),
                    b.static_cluster("keyservice_usage", host, int(port))]
        path = work / "envoy.json"
        path.write_text(json.dumps(b.bootstrap(
            [b.wasm_filter("keygate", wasm, "keygate", keygate_config(keys))], clusters)))
        proc = procs.start(["taskset", "-c", "0", envoy_bin, "-c", path, "--concurrency", "1",
                            "--use-dynamic-base-id", "--admin-address-path", work / "envoy.admin",
                            "-l", "warn"], work / "envoy.log", env=dict(os.environ, JWT_SECRET=b.SECRET))
        envoy = b.envoy_ready(b.Config("keygate", "-", "keygate", None, None), proc,
                              work / "envoy.admin", work / "envoy.log")

        tokens_file = work / "tokens.txt"
        b.write_tokens(tokens_file, keys)
        script = work / "rotate.lua"
        script.write_text(f"""local tokens = {{}}
for line in io.lines("{tokens_file}") do tokens[#tokens + 1] = line end
local sent = 0
request = function()
  sent = sent % #tokens + 1
  return wrk.format(nil, nil, {{["authorization"] = "Bearer " .. tokens[sent]}})
end
""")
        seconds = INTERVAL_S * (intervals + 4)
        log(f"{keys} keys in turn for {seconds} s; reports every {INTERVAL_S} s")
        load = subprocess.Popen(["taskset", "-c", "1", wrk, "-t1", "-c8", f"-d{seconds}s", "--latency",
                                 "-s", str(script), f"http://127.0.0.1:{envoy.port}/"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Every key checked and cached, and a first report out: measure from a report's answer.
        b.wait_for("the first usage report", 60,
                   lambda: (b.envoy_counter(envoy, "wasmcustom.keygate.usage_reports_ok") or 0) > 0,
                   proc, envoy.log)
        time.sleep(INTERVAL_S / 2)
        entries_metric = "keyservice_usage_unknown_keys_total"
        start, started = counters(envoy), time.monotonic()
        entries_start = keyservice_metric(keyservice, entries_metric)
        time.sleep(INTERVAL_S * intervals)
        end, elapsed = counters(envoy), time.monotonic() - started
        # keyservice counts the report entries it took (here every key is unstored: see above).
        entries = keyservice_metric(keyservice, entries_metric) - entries_start
        load.wait(timeout=seconds + 60)
        output = load.stdout.read() if load.stdout else ""
        sample = b.parse_wrk(output)
        if sample.non_2xx or sample.socket_errors:
            raise b.BenchError(f"wrk saw errors:\n{output}")
        delta = {name: end[name] - start[name] for name in end}
        requests = delta["wasmcustom.keygate.requests_allowed"]
        rps = requests / elapsed
        posts = delta["cluster.keyservice_usage.upstream_rq_total"]
        sent = delta["cluster.keyservice_usage.upstream_cx_tx_bytes_total"]
        received = delta["cluster.keyservice_usage.upstream_cx_rx_bytes_total"]
        applied = keyservice_metric(keyservice, 'keyservice_usage_reports_total{result="applied"}')
        unknown = keyservice_metric(keyservice, "keyservice_usage_unknown_keys_total")
        _, body = b.http(f"http://{envoy.admin}/stats?format=json&filter=usage_dropped")
        dropped = sum(int(s.get("value", 0)) for s in json.loads(body).get("stats", []))
        if delta["wasmcustom.keygate.usage_reports_error"] or dropped:
            raise b.BenchError(f"reports failed or counts were dropped: {delta}, dropped {dropped}")
        if rps * INTERVAL_S < keys:
            raise b.BenchError(f"{rps:.0f} requests/s cannot use {keys} keys every {INTERVAL_S} s")
        if entries <= 0:
            raise b.BenchError("keyservice took no report entries during the window")
        row = {"keys": keys, "interval_s": INTERVAL_S, "seconds": elapsed, "requests_per_s": rps,
               "posts": posts, "entries": entries, "bytes_sent": sent, "bytes_received": received,
               "bytes_per_s": sent / elapsed, "bytes_per_entry": sent / entries,
               "reports_applied_total": applied, "entries_of_unstored_keys_total": unknown}
        log(json.dumps(row))
        meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "commit": b.git_describe(), "command": "make bench-usage" + (
                    " BENCH_ARGS=--quick" if args.quick else "")}
        text = render(row, meta)
        existing = args.out.read_text() if args.out.exists() else "# keygate benchmarks\n"
        start_at, end_at = existing.find(BEGIN), existing.find(END)
        if 0 <= start_at < end_at:
            existing = existing[:start_at] + text + existing[end_at + len(END):]
        else:
            existing = f"{existing.rstrip()}\n\n{text}\n"
        args.out.write_text(existing)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "usage": row}, indent=2))
        print(text)
        return 0
    except b.BenchError as err:
        print(f"[usage] error: {err}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def render(row: dict, meta: dict) -> str:
    kib = lambda n: f"{n / 1024:.1f} KiB"  # noqa: E731
    return "\n".join([
        BEGIN,
        "## Usage reporting traffic",
        "",
        f"One Envoy (`--concurrency 1`) with `usage` (`report_every_seconds` {row['interval_s']}, "
        f"`max_keys` {row['keys']}), {row['keys']} distinct long-lived keys sent in turn by wrk at "
        f"{row['requests_per_s']:.0f} requests/s, so every key is used in every round of reports; "
        "the reports go to the real keyservice through a cluster of their own, whose Envoy counters "
        f"are the traffic; keyservice counts the entries it took. Measured over {row['seconds']:.0f} s "
        "after the first report (`bench/usage_traffic.py`; "
        "[Usage and rate limits](docs/usage-and-limits.md#usage)). A round is the reports that empty "
        "the reporter's table (1,000 entries each, back to back), then `report_every_seconds` until "
        "the next.",
        "",
        f"- Date: {meta['date']}; keygate {meta['commit']}; command: `{meta['command']}`",
        "",
        "| keys in use | report POSTs per second | entries per second | bytes per entry (with "
        "HTTP) | sent per second | received per second |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {row['keys']} | {row['posts'] / row['seconds']:.2f} | {row['entries'] / row['seconds']:.0f} "
        f"| {row['bytes_per_entry']:.0f} B | {kib(row['bytes_per_s'])} "
        f"| {kib(row['bytes_received'] / row['seconds'])} |",
        "",
        "The traffic depends on the keys in use, not on the request rate (here "
        f"{row['requests_per_s']:.0f} requests/s): each round sends one entry per key used since "
        "the last, at most `max_keys`, in reports of up to 1,000 entries. A longer "
        "`report_every_seconds` divides it.",
        END,
    ])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
