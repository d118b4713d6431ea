#!/usr/bin/env python3
"""docker-compose.yml checked without a container engine (CI; the real run is
deploy/test-compose.sh): every cmdistill service runs a real subcommand with flags it has and a
run file that exists and validates; the run file's ports match the Prometheus scrape config and
the health checks; the Dockerfiles and mounted paths exist.
Usage: compose_static_test.py CMDISTILL_BINARY SOURCE_DIR."""
import os
import re
import subprocess
import sys

try:
    import yaml
except ImportError:
    print("SKIPPED: python3-yaml missing (apt-get install python3-yaml)")
    sys.exit(77)


def main():
    binary, src = sys.argv[1], sys.argv[2]
    fails = []
    compose = yaml.safe_load(open(os.path.join(src, "docker-compose.yml")))
    top = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    subs = set(re.findall(r"^  (\S+)\s", top.split("subcommands:")[1], re.M))
    prom = yaml.safe_load(open(os.path.join(src, "deploy/prometheus/compose.yml")))
    sd = prom["scrape_configs"][0]["dns_sd_configs"]
    scraped = {c["names"][0]: c["port"] for c in sd}
    roles_run = set()
    for name, svc in compose["services"].items():
        b = svc.get("build")
        if b:
            if not os.path.exists(os.path.join(src, b["context"], b["dockerfile"])):
                fails.append(f"{name}: {b['dockerfile']} missing")
        for v in svc.get("volumes", []):
            host = v.split(":")[0]
            if host.startswith("./") and not os.path.exists(os.path.join(src, host)):
                fails.append(f"{name}: volume source {host} missing")
        cmd = svc.get("command", [])
        if "cmdistill" not in svc.get("image", "") or not cmd or cmd[0].startswith("--"):
            continue
        if cmd[0] not in subs:
            fails.append(f"{name}: '{cmd[0]}' is not a subcommand")
            continue
        helptext = subprocess.run([binary, cmd[0], "--help"], capture_output=True, text=True).stdout
        for a in cmd[1:]:
            if a.startswith("--") and not re.search(rf"^\s+{re.escape(a)}\b", helptext, re.M):
                fails.append(f"{name}: {cmd[0]} has no flag {a}")
        cfg = cmd[cmd.index("--config") + 1]
        local = cfg.replace("/etc/cmdistill/configs", os.path.join(src, "configs"))
        v = subprocess.run([binary, "config", "validate", "--config", local], capture_output=True, text=True)
        if v.returncode != 0:
            fails.append(f"{name}: {cfg}: {v.stderr.strip()}")
            continue
        run = yaml.safe_load(open(local))["services"]
        role = cmd[0]
        roles_run.add(role)
        if role in ("learner", "teacher", "reward"):
            mport = int(run[role]["metrics_listen"].rsplit(":", 1)[1])
            gport = int(run[role]["listen"].rsplit(":", 1)[1])
            test = svc.get("healthcheck", {}).get("test", [])
            if f"127.0.0.1:{gport}" not in test:
                fails.append(f"{name}: health check does not ask port {gport}: {test}")
            host = run[role]["address"].replace("dns:///", "").rsplit(":", 1)[0]
            if host not in compose["services"]:
                fails.append(f"{name}: address {run[role]['address']} names no compose service")
        elif role == "actor":
            mport = int(run["actor_metrics_listen"].rsplit(":", 1)[1])
            # Liveness from progress: /healthz on its metrics port. A replicated service's
            # test must be a string: podman-compose 1.0.3 pops a list's "CMD" in place, and
            # the second replica's `up` fails.
            test = svc.get("healthcheck", {}).get("test")
            if not isinstance(test, str) or f"--http-port {mport}" not in test:
                fails.append(f"{name}: health check is not 'cmdistill health --http-port "
                             f"{mport}' as a string: {test!r}")
            else:
                h = subprocess.run([binary] + test.split()[1:2] + ["--help"],
                                   capture_output=True, text=True).stdout
                if "--http-port" not in h:
                    fails.append(f"{name}: cmdistill health has no --http-port")
        else:
            continue
        if scraped.get(role) != mport:
            fails.append(f"{name}: Prometheus scrapes port {scraped.get(role)}, metrics are on {mport}")
    if roles_run != {"prepare", "learner", "teacher", "reward", "actor"}:
        fails.append(f"services run: {sorted(roles_run)}")
    for f in fails:
        print("FAIL:", f)
    print(f"docker-compose.yml: {len(compose['services'])} services, {len(fails)} problems")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
