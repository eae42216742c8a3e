#!/usr/bin/env python3
"""Revocation propagation with the feed (issue 18): two Envoys, two keyservice replicas on one
PostgreSQL, traffic with thousands of distinct long-lived keys.

- **Propagation**: keys are revoked one at a time, alternately through each replica, while wrk
  sends every key through both Envoys; for each revocation, the time from keyservice's `DELETE`
  returning to the first `401` at each Envoy (each polled with that key in its own thread).
- **Callouts per key**: in steady use (every key already checked once), revocation callouts
  counted over a window, per key per hour, with the feed and without it (the same Envoy
  configuration but `feed`; `max_active_seconds` 30 s, the default) — like for like, in one run.

Envoys on core 0 (`--concurrency 1` each), wrk, keyservice and PostgreSQL on core 1. The section
goes into BENCHMARKS.md between its markers; the numbers also to target/bench/propagation.json.

    python3 bench/propagation.py                    # what `make bench-propagation` runs
    python3 bench/propagation.py --quick            # fewer keys and revocations, a smoke run

Needs PostgreSQL's server binaries (PG_BIN, the PATH, or Debian's /usr/lib/postgresql/*/bin);
the rest as bench/bench.py.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as b  # noqa: E402

BEGIN = "<!-- revocation propagation: begin -->"
END = "<!-- revocation propagation: end -->"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_bin() -> Path:
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += [str(Path(p).parent) for p in [shutil.which("initdb") or ""] if p]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if candidate and all((Path(candidate) / tool).exists()
                             for tool in ("initdb", "pg_ctl", "createdb")):
            return Path(candidate)
    raise b.BenchError("no PostgreSQL server binaries (initdb): `make bench-tools` installs "
                       "Debian's postgresql, or set PG_BIN")


class Postgres:
    """A throwaway cluster on a free loopback port, as the postgres user when run as root."""

    def __init__(self, work: Path, log) -> None:
        self.bin = pg_bin()
        self.dir = work / "pg"
        self.dir.mkdir()
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
            shutil.chown(work, "postgres")
        self.run([self.bin / "initdb", "-D", self.dir / "data", "-U", "postgres",
                  "--auth=trust", "-E", "UTF8"])
        self.run([self.bin / "pg_ctl", "-D", self.dir / "data", "-l", self.dir / "log", "-w",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                  "-c max_connections=200", "start"])
        self.run([self.bin / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                  "postgres", "keygate_bench"])
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/keygate_bench"
        log(f"PostgreSQL on port {self.port}")

    def run(self, args: list) -> None:
        out = subprocess.run(["taskset", "-c", "1", *self.as_user, *map(str, args)],
                             capture_output=True, text=True, check=False, timeout=120)
        if out.returncode != 0:
            raise b.BenchError(f"{args[0]}: {out.stderr}{out.stdout}")

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"),
                        "-m", "immediate", "stop"], capture_output=True, check=False)


def start_replica(procs: b.Processes, keyservice: Path, database: str, work: Path,
                  name: str) -> str:
    out = work / f"{name}.stdout"
    log = work / f"{name}.log"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KEYSERVICE_") and k != "DATABASE_URL"}
    env.update(JWT_SECRET=b.SECRET, RUST_LOG="warn")
    proc = procs.start(["taskset", "-c", "1", keyservice, "serve", "--listen", "127.0.0.1:0",
                        "--database", database, "--admin-token", b.ADMIN_TOKEN], log, env=env,
                       stdout=open(out, "wb"))  # noqa: SIM115

    def listening():
        for line in out.read_text(errors="replace").splitlines():
            if line.startswith("listening on http://"):
                return line.removeprefix("listening on http://").strip()
        return None

    return b.wait_for(name, b.START_TIMEOUT, listening, proc, log)


def keygate_config(feed: bool) -> str:
    config: dict = {
        "secret": {"env": "JWT_SECRET"},
        "revocation": {"cluster": "keyservice", "timeout_ms": 1000,
                       "cache": {"max_active_seconds": 30}},
    }
    if feed:
        config["revocation"]["feed"] = {"wait_seconds": 20}
    return json.dumps(config)


def start_envoys(procs: b.Processes, envoy_bin: Path, wasm: Path, replicas: list, work: Path,
                 feed: bool) -> list:
    cluster = b.static_cluster("keyservice", "127.0.0.1", 0)
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
        {"endpoint": {"address": {"socket_address": {
            "address": addr.split(":")[0], "port_value": int(addr.split(":")[1])}}}}
        for addr in replicas]
    envoys = []
    for index in range(2):
        label = f"{'feed' if feed else 'nofeed'}-{index}"
        path = work / f"envoy-{label}.json"
        path.write_text(json.dumps(b.bootstrap(
            [b.wasm_filter("keygate", wasm, "keygate", keygate_config(feed))], [cluster])))
        admin_path = work / f"envoy-{label}.admin"
        log = work / f"envoy-{label}.log"
        proc = procs.start(["taskset", "-c", "0", envoy_bin, "-c", path, "--concurrency", "1",
                            "--use-dynamic-base-id", "--admin-address-path", admin_path,
                            "-l", "warn"], log, env=dict(os.environ, JWT_SECRET=b.SECRET))
        config = b.Config(id=label, number="", title=label, filters=None, token=None)
        envoys.append(b.envoy_ready(config, proc, admin_path, log))
    return envoys


def issue_keys(replica: str, count: int) -> list:
    keys = []
    for index in range(count):
        body = json.dumps({"user_id": f"user-{index}", "name": "propagation"}).encode()
        status, answer = b.http(f"http://{replica}/v1/keys", data=body, method="POST", headers={
            "authorization": f"Bearer {b.ADMIN_TOKEN}", "content-type": "application/json"})
        if status != 201:
            raise b.BenchError(f"POST /v1/keys: {status} {answer[:200]!r}")
        created = json.loads(answer)
        keys.append((created["id"], created["key"]))
    return keys


def start_load(wrk: str, envoys: list, tokens: list, work: Path, seconds: int) -> list:
    script = b.rotation_script(tokens, work / "rotate.lua")
    return [subprocess.Popen(
        ["taskset", "-c", "1", wrk, "-t1", "-c4", f"-d{seconds}s", "-s", str(script),
         f"http://127.0.0.1:{envoy.port}/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for envoy in envoys]


def callouts(envoy) -> int:
    return sum(b.envoy_counter(envoy, f"wasmcustom.keygate.callouts_{kind}") or 0
               for kind in ("ok", "error", "timeout"))


def refused_after(envoy, token: str, start: float, deadline: float) -> float | None:
    """Seconds from `start` to the first 401 for `token` at `envoy`; None past the deadline."""
    url = f"http://127.0.0.1:{envoy.port}/"
    while time.monotonic() < deadline:
        status, _ = b.http(url, headers={"authorization": f"Bearer {token}"}, timeout=5)
        if status == 401:
            return time.monotonic() - start
        time.sleep(0.005)
    return None


def percentile(values: list, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def measure_callouts(wrk: str, envoys: list, tokens: list, work: Path, warm: int,
                     window: int, log) -> dict:
    """Steady use: every key checked once (warm-up), then callouts over `window` seconds."""
    load = start_load(wrk, envoys, tokens, work, warm + window + 5)
    time.sleep(warm)
    before = [callouts(envoy) for envoy in envoys]
    time.sleep(window)
    after = [callouts(envoy) for envoy in envoys]
    for proc in load:
        proc.wait()
    per_envoy = [a - bf for a, bf in zip(after, before)]
    per_key_hour = sum(per_envoy) / len(envoys) / len(tokens) * 3600 / window
    log(f"callouts over {window} s: {per_envoy} → {per_key_hour:.2f} per key per hour per Envoy")
    return {"window_seconds": window, "callouts": per_envoy, "per_key_per_hour": per_key_hour}


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 keys, 20 revocations, 35 s windows")
    parser.add_argument("--keys", type=int, help="distinct keys (default 2000)")
    parser.add_argument("--revocations", type=int, help="revocations measured (default 200)")
    parser.add_argument("--out", type=Path, default=b.ROOT / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=b.ROOT / "target/bench/propagation.json")
    args = parser.parse_args(argv)
    keys_count = args.keys or (300 if args.quick else 2000)
    revocations = args.revocations or (20 if args.quick else 200)
    # At least the 30 s "active" bound without the feed, so that every key is asked again.
    window = 35 if args.quick else 60

    def log(message: str) -> None:
        print(f"[propagation] {message}", file=sys.stderr, flush=True)

    envoy_bin = b.binary("ENVOY_BIN", b.ROOT / ".venv/bin/envoy", "Envoy (`make tools`)")
    wasm = b.binary("KEYGATE_WASM", b.ROOT / "target/wasm32-wasip1/release/keygate.wasm",
                    "the filter (`make wasm`)")
    keyservice = b.binary("KEYSERVICE_BIN", b.default_keyservice(), "keyservice")
    wrk = shutil.which(os.environ.get("WRK", "wrk")) or ""
    if not wrk:
        raise b.BenchError("wrk is missing: `make bench-tools` installs it")
    work = Path(tempfile.mkdtemp(prefix="keygate-propagation-"))
    procs = b.Processes()
    postgres = None
    try:
        postgres = Postgres(work, log)
        replicas = [start_replica(procs, keyservice, postgres.url, work, f"replica-{name}")
                    for name in ("a", "b")]
        log(f"keyservice replicas at {replicas}; issuing {keys_count} keys")
        keys = issue_keys(replicas[0], keys_count)
        tokens = [key for _, key in keys]

        # Without the feed first, then with it: the same keys, fresh Envoys.
        envoys = start_envoys(procs, envoy_bin, wasm, replicas, work, feed=False)
        without = measure_callouts(wrk, envoys, tokens, work, 40, window, log)
        procs.stop([envoy.proc for envoy in envoys])
        envoys = start_envoys(procs, envoy_bin, wasm, replicas, work, feed=True)
        b.wait_for("the feed followed", 30, lambda: all(
            (b.envoy_counter(e, "wasmcustom.keygate.feed_polls_ok") or 0) > 0 for e in envoys))
        with_feed = measure_callouts(wrk, envoys, tokens, work, 40, window, log)

        log(f"revoking {revocations} keys, alternately through each replica, under load")
        load = start_load(wrk, envoys, tokens[revocations:], work, 36_000)
        times: list[list[float]] = [[], []]
        missed = 0
        try:
            for index in range(revocations):
                key_id, token = keys[index]
                # Checked (and cached "active") at both Envoys before it is revoked.
                for envoy in envoys:
                    status, _ = b.http(f"http://127.0.0.1:{envoy.port}/",
                                       headers={"authorization": f"Bearer {token}"})
                    if status != 200:
                        raise b.BenchError(f"key {index} was not allowed before its revocation: {status}")
                replica = replicas[index % 2]
                status, answer = b.http(f"http://{replica}/v1/keys/{key_id}", method="DELETE",
                                        headers={"authorization": f"Bearer {b.ADMIN_TOKEN}"})
                if status != 200:
                    raise b.BenchError(f"DELETE: {status} {answer[:200]!r}")
                start = time.monotonic()
                deadline = start + 60
                results: list = [None, None]

                def poll(which: int) -> None:
                    results[which] = refused_after(envoys[which], token, start, deadline)

                threads = [threading.Thread(target=poll, args=(i,)) for i in range(2)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                for which, seconds in enumerate(results):
                    if seconds is None:
                        missed += 1
                    else:
                        times[which].append(seconds)
        finally:
            for proc in load:
                proc.terminate()
                proc.wait()
        lag = [(b.envoy_counter(e, "wasmcustom.keygate.feed_revocations_applied") or 0)
               for e in envoys]
        all_times = times[0] + times[1]
        if missed or not all_times:
            raise b.BenchError(f"{missed} revocations never reached an Envoy within 60 s")
        rows = {
            "keys": keys_count,
            "revocations": revocations,
            "propagation_ms": {
                "p50": percentile(all_times, 0.5) * 1000,
                "p99": percentile(all_times, 0.99) * 1000,
                "max": max(all_times) * 1000,
                "per_envoy_p50": [statistics.median(t) * 1000 for t in times],
                "per_envoy_p99": [percentile(t, 0.99) * 1000 for t in times],
            },
            "applied": lag,
            "callouts_without_feed": without,
            "callouts_with_feed": with_feed,
        }
        meta = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": b.git_describe(),
            "command": "python3 bench/propagation.py" + (" --quick" if args.quick else ""),
            "cpu": b.cpu_facts(),
            "load": b.load_average(),
        }
        text = render(rows, meta)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        existing = args.out.read_text() if args.out.exists() else "# keygate benchmarks\n"
        start_at, end_at = existing.find(BEGIN), existing.find(END)
        if 0 <= start_at < end_at:
            existing = existing[:start_at] + existing[end_at + len(END):]
        args.out.write_text(f"{existing.rstrip()}\n\n{text}\n")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "propagation": rows}, indent=2))
        print(text)
        return 0
    finally:
        procs.stop_all()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(work, ignore_errors=True)


def render(rows: dict, meta: dict) -> str:
    p = rows["propagation_ms"]
    without, with_feed = rows["callouts_without_feed"], rows["callouts_with_feed"]
    per_day = with_feed["per_key_per_hour"] * 24
    return "\n".join([
        BEGIN,
        "## Revocation propagation with the feed",
        "",
        f"Two Envoys (`--concurrency 1`, core 0) following the revocation feed of two keyservice "
        f"replicas on one PostgreSQL (core 1, with wrk); {rows['keys']} distinct keys without "
        f"`exp` sent through both Envoys in turn by wrk the whole time. {rows['revocations']} keys "
        "revoked one at a time, alternately through each replica; each revoked key was allowed "
        "(and its \"active\" answer cached) at both Envoys just before. Propagation is from "
        "keyservice's `DELETE` returning to the first `401` for that key at an Envoy, polled every "
        "few milliseconds at each.",
        "",
        f"- Date: {meta['date']}; commit `{meta['commit']}`; {meta['cpu'][0]}, {meta['cpu'][1]} "
        f"cores; load before {meta['load']:.2f}; command: `{meta['command']}`",
        "",
        "| propagation (both Envoys) | p50 | p99 | max |",
        "| --- | ---: | ---: | ---: |",
        f"| DELETE returned → first 401 | {p['p50']:.0f} ms | {p['p99']:.0f} ms | {p['max']:.0f} ms |",
        "",
        f"Per Envoy, p50 {', '.join(f'{v:.0f} ms' for v in p['per_envoy_p50'])}; p99 "
        f"{', '.join(f'{v:.0f} ms' for v in p['per_envoy_p99'])}. Revocations marked from the "
        f"feed: {rows['applied']}.",
        "",
        "Revocation callouts in steady use (every key already checked once; the same keys, "
        "configuration and load, fresh Envoys), per key and per Envoy:",
        "",
        "| configuration | callouts in the window | per key per hour |",
        "| --- | ---: | ---: |",
        f"| without the feed (`max_active_seconds` 30 s) | {without['callouts']} in "
        f"{without['window_seconds']} s | {without['per_key_per_hour']:.1f} |",
        f"| with the feed (\"active\" kept a day while healthy) | {with_feed['callouts']} in "
        f"{with_feed['window_seconds']} s | {with_feed['per_key_per_hour']:.2f} "
        f"(≈ {per_day:.2f} per day) |",
        "",
        END,
    ])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except b.BenchError as err:
        print(f"propagation: {err}", file=sys.stderr)
        sys.exit(1)
