#!/usr/bin/env python3
"""The Grafana dashboard against a real Prometheus.

Runs `cmdistill local --smoke --monitor` (Debian's `prometheus` scrapes every child through the
targets file the supervisor keeps), then serves the stored data again with the command the run
printed and asserts, over the run's time range:
  * every role (learner, teacher, reward, actor) was scraped (`up` == 1 at some point);
  * the project's rules were loaded (recording and alerting groups);
  * every panel query of deploy/grafana/cmdistill.json parses and returns at least one series
    with at least one value.
Usage: dashboard_test.py CMDISTILL_BINARY SOURCE_DIR. Exit 77 (skipped) without Prometheus.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request


def get(port, path, params=None):
    url = f"http://127.0.0.1:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    binary, source = sys.argv[1], sys.argv[2]
    if shutil.which("prometheus") is None:
        print("SKIPPED: prometheus not found (apt-get install prometheus)")
        return 77
    dashboard = json.load(open(os.path.join(source, "deploy/grafana/cmdistill.json")))
    queries = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 25, f"only {len(queries)} panel queries"
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        run = subprocess.run(
            [binary, "local", "--config", os.path.join(source, "configs/quickstart.yaml"),
             "--smoke", "--monitor", "--monitor-port", "0",
             # lagrangian: the λ panel has a series; 200 steps (~20-30 s on 2 cores;
             # 60 became too few once a step got ~2x faster): every child is scraped
             # many times at 1 s, so rates over 1m have samples.
             # (the smoke data is 100 steps an epoch: three epochs allowed).
             "--set", "method=lagrangian", "--set", "training.max_steps=200",
             "--set", "training.epochs=3",
             "--set", f"output_dir={tmp}/run"],
            capture_output=True, text=True, timeout=600)
        end = time.time()
        if run.returncode != 0:
            print(run.stdout, run.stderr, sep="\n")
            print(f"FAIL: cmdistill local --monitor exited {run.returncode}")
            return 1
        m = re.search(r"^\s+(prometheus --config\.file=\S+ --storage\.tsdb\.path=\S+ "
                      r"--web\.listen-address=127\.0\.0\.1:(\d+))$", run.stdout, re.M)
        assert m, "the summary does not print how to reopen the data:\n" + run.stdout
        targets = json.load(open(f"{tmp}/run/monitor/targets.json"))
        assert isinstance(targets, list), targets
        cmd, port = m.group(1).split(), int(m.group(2))
        log = open(f"{tmp}/reopen.log", "w")
        prom = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 60
            while True:
                try:
                    if get(port, "/-/ready")[0] == 200:
                        break
                except OSError:
                    pass
                if prom.poll() is not None or time.time() > deadline:
                    print(open(f"{tmp}/reopen.log").read())
                    print("FAIL: the reopened Prometheus did not become ready")
                    return 1
                time.sleep(0.2)
            rng = {"start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"}

            def series(expr):
                code, body = get(port, "/api/v1/query_range", dict(rng, query=expr))
                doc = json.loads(body)
                if code != 200 or doc.get("status") != "success":
                    return None, doc.get("error", body)
                return [r for r in doc["data"]["result"] if r["values"]], None

            up, err = series("max by (role) (up)")
            roles = {r["metric"].get("role") for r in (up or [])
                     if any(float(v) == 1 for _, v in r["values"])}
            if roles != {"learner", "teacher", "reward", "actor"}:
                failures.append(f"roles scraped: {sorted(r for r in roles if r)} ({err})")
            code, body = get(port, "/api/v1/rules")
            groups = {g["name"]: len(g["rules"]) for g in json.loads(body)["data"]["groups"]}
            if not any("record" in n for n in groups) or not any("alert" in n for n in groups):
                failures.append(f"rule groups loaded: {groups}")
            for title, expr in queries:
                got, err = series(expr)
                if got is None:
                    failures.append(f"{title}: {expr!r} is invalid: {err}")
                elif not got:
                    failures.append(f"{title}: {expr!r} returned no series")
            print(f"{len(queries)} panel queries checked over {end - start:.0f} s of data; "
                  f"roles scraped: {sorted(roles)}; rule groups: {groups}")
        finally:
            prom.send_signal(signal.SIGTERM)
            prom.wait(timeout=30)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
