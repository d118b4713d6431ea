#!/usr/bin/env python3
"""The Kubernetes overlays render and hang together (no cluster needed).

For each overlay of deploy/k8s (secrets made by make-secrets.sh in a scratch copy), renders
`kubectl kustomize` and checks:
  * every cmdistill container, init container and exec probe names a real subcommand, and
    every --flag it passes is one that subcommand's --help lists;
  * the run file (ConfigMap cmdistill-run) validates with `cmdistill config validate`;
  * container ports match the run file's listen/metrics ports, Services target named ports that
    exist, probes check the port the service listens on, and clients' addresses name a Service
    (headless for dns:/// round-robin targets) on the right port;
  * every ConfigMap, Secret and PersistentVolumeClaim a pod references exists, and every file
    the run file names (token, certificates) lies in a mounted volume whose source has that key;
  * graceful termination outlasts services.shutdown_grace_seconds; the learner has a PDB;
    the gpu overlay gives the learner, teachers and actors a GPU;
  * a finite run ends: the learner is a Job (one completion, restartPolicy OnFailure, a backoff
    limit, output_dir on a PersistentVolumeClaim it mounts), the actors are a Job whose
    parallelism is the knob (no completions: done when they have exited 0 with the learner,
    OnFailure, a backoff limit), teacher and reward are Deployments, and no StatefulSet is left.
Usage: k8s_render_test.py CMDISTILL_BINARY SOURCE_DIR. Exit 77 (skipped) without kubectl/yaml.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    print("SKIPPED: python3-yaml missing (apt-get install python3-yaml)")
    sys.exit(77)

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
    return cond


def port_of(hostport):
    return int(hostport.rsplit(":", 1)[1])


def main():
    binary, source = sys.argv[1], sys.argv[2]
    if shutil.which("kubectl") is None:
        print("SKIPPED: kubectl not found")
        return 77
    top = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    subcommands = set(re.findall(r"^  (\S+)\s", top.split("subcommands:")[1], re.M))
    help_cache = {}

    def flags_of(sub):
        if sub not in help_cache:
            out = subprocess.run([binary, sub, "--help"], capture_output=True, text=True).stdout
            help_cache[sub] = set(re.findall(r"^\s+(--[a-z0-9-]+)", out, re.M))
        return help_cache[sub]

    def check_cli(where, argv):
        if not check(argv and argv[0] in subcommands, f"{where}: '{argv[:1]}' is not a subcommand"):
            return
        for a in argv[1:]:
            if a.startswith("--"):
                check(a.split("=")[0] in flags_of(argv[0]), f"{where}: {argv[0]} has no flag {a}")

    with tempfile.TemporaryDirectory() as tmp:
        k8s = os.path.join(tmp, "k8s")
        shutil.copytree(os.path.join(source, "deploy/k8s"), k8s,
                        ignore=shutil.ignore_patterns("secrets"))
        overlays = sorted(os.listdir(os.path.join(k8s, "overlays")))
        check(overlays == ["cpu-smoke", "gpu"], f"overlays: {overlays}")
        for overlay in overlays:
            odir = os.path.join(k8s, "overlays", overlay)
            subprocess.run(["bash", os.path.join(k8s, "make-secrets.sh"), odir], check=True,
                           capture_output=True)
            r = subprocess.run(["kubectl", "kustomize", odir], capture_output=True, text=True)
            if not check(r.returncode == 0, f"{overlay}: kustomize failed: {r.stderr}"):
                continue
            objs = [o for o in yaml.safe_load_all(r.stdout) if o]
            by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
            n_before = len(failures)
            check_overlay(overlay, objs, by, check_cli, binary, tmp)
            print(f"{overlay}: {len(objs)} objects, "
                  f"{'ok' if len(failures) == n_before else 'FAILED'}")
    check_cuda_dockerfile(source)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


def check_overlay(overlay, objs, by, check_cli, binary, tmp):
    cms = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("cmdistill-run")]
    if not check(len(cms) == 1, f"{overlay}: {len(cms)} run ConfigMaps"):
        return
    run_cm = cms[0]
    run_text = run_cm["data"]["run.yaml"]
    path = os.path.join(tmp, f"{overlay}-run.yaml")
    open(path, "w").write(run_text)
    v = subprocess.run([binary, "config", "validate", "--config", path], capture_output=True, text=True)
    check(v.returncode == 0, f"{overlay}: run file invalid: {v.stderr}")
    run = yaml.safe_load(run_text)
    svc_cfg = run["services"]
    listen = {r: port_of(svc_cfg[r]["listen"]) for r in ("learner", "teacher", "reward")}
    metrics = {r: port_of(svc_cfg[r]["metrics_listen"]) for r in ("learner", "teacher", "reward")}
    metrics["actor"] = port_of(svc_cfg["actor_metrics_listen"])
    grace = float(svc_cfg.get("shutdown_grace_seconds", 5))
    sec = run.get("security", {})
    secret_files = [sec.get("token_file")] + [
        sec.get(side, {}).get(k) for side in ("server", "client")
        for k in ("cert_file", "key_file", "ca_file")]
    secret_files = [f for f in secret_files if f]

    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    workloads = [o for o in objs if o["kind"] in ("Deployment", "StatefulSet", "Job")]
    roles_seen = set()
    for w in workloads:
        wname = f"{overlay}/{w['kind']}/{w['metadata']['name']}"
        pod = w["spec"]["template"]["spec"]
        claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for vname, vol in volumes.items():
            if "configMap" in vol:
                check(("ConfigMap", vol["configMap"]["name"]) in names, f"{wname}: ConfigMap {vol['configMap']['name']} missing")
            if "secret" in vol:
                check(("Secret", vol["secret"]["secretName"]) in names, f"{wname}: Secret {vol['secret']['secretName']} missing")
            if "persistentVolumeClaim" in vol:
                check(("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"]) in names,
                      f"{wname}: PVC {vol['persistentVolumeClaim']['claimName']} missing")
        if w["kind"] != "Job":
            check(pod.get("terminationGracePeriodSeconds", 30) > grace,
                  f"{wname}: terminationGracePeriodSeconds <= shutdown_grace_seconds {grace}")
        for c in pod.get("initContainers", []) + pod["containers"]:
            cname = f"{wname}/{c['name']}"
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            for m in mounts.values():
                check(m["name"] in volumes or m["name"] in claims, f"{cname}: mount of unknown volume {m['name']}")
            if "cmdistill" not in c["image"] or "command" in c:
                continue
            args = c.get("args", [])
            check_cli(cname, args)
            role = args[0] if args else ""
            roles_seen.add(role)
            # The run file is mounted where --config says, and the files it names exist there.
            if "--config" in args and role != "prepare":  # prepare opens no connection
                cfg = args[args.index("--config") + 1]
                mdir = os.path.dirname(cfg)
                m = mounts.get(mdir)
                check(m is not None and "configMap" in volumes.get(m["name"], {}),
                      f"{cname}: --config {cfg} is not in a mounted ConfigMap")
                for f in secret_files:
                    d, key = os.path.dirname(f), os.path.basename(f)
                    m = mounts.get(d)
                    if not check(m is not None, f"{cname}: {f} (run file) is not in a mounted volume"):
                        continue
                    src = volumes.get(m["name"], {})
                    sname = src.get("secret", {}).get("secretName")
                    check(sname and key in by.get(("Secret", sname), {}).get("data", {}),
                          f"{cname}: {f}: Secret {sname} has no key {key}")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            if role in listen:
                check(ports.get("grpc") == listen[role], f"{cname}: grpc port {ports.get('grpc')} != run file {listen[role]}")
            if role in metrics:
                check(ports.get("metrics") == metrics[role], f"{cname}: metrics port {ports.get('metrics')} != run file {metrics[role]}")
                ann = w["spec"]["template"]["metadata"].get("annotations", {})
                check(ann.get("prometheus.io/port") == str(metrics[role]), f"{cname}: prometheus.io/port annotation")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    continue
                cmd = c[probe].get("exec", {}).get("command", [])
                if cmd and cmd[0] == "cmdistill":
                    check_cli(f"{cname} {probe}", cmd[1:])
                    if "--address" in cmd and role in listen:
                        check(port_of(cmd[cmd.index("--address") + 1]) == listen[role],
                              f"{cname} {probe}: checks another port than {listen[role]}")
            if overlay == "gpu" and role in ("learner", "teacher", "actor"):
                lim = c.get("resources", {}).get("limits", {})
                check(str(lim.get("nvidia.com/gpu")) == "1", f"{cname}: no GPU limit")
            if overlay == "gpu":
                # The GPU image: deploy/docker/Dockerfile.cuda (cmdistill:cuda).
                check(c["image"].endswith(":cuda"), f"{cname}: image {c['image']} is not :cuda")
    check({"learner", "teacher", "reward", "actor"} <= roles_seen, f"{overlay}: roles {roles_seen}")
    # Services: named target ports exist in the selected pods; clients' addresses resolve.
    for s in (o for o in objs if o["kind"] == "Service"):
        sel = s["spec"].get("selector", {})
        pods = [w for w in workloads
                if all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        check(pods, f"{overlay}: Service {s['metadata']['name']} selects no pod")
        cports = {p.get("name") for w in pods for c in w["spec"]["template"]["spec"]["containers"]
                  for p in c.get("ports", [])}
        for p in s["spec"]["ports"]:
            check(p["targetPort"] in cports, f"{overlay}: Service {s['metadata']['name']} targets missing port {p['targetPort']}")
    for role in ("learner", "teacher", "reward"):
        addr = svc_cfg[role]["address"]
        dns = addr.startswith("dns:///")
        host, port = addr.replace("dns:///", "").rsplit(":", 1)
        s = by.get(("Service", host))
        if check(s is not None, f"{overlay}: {role} address {addr} names no Service"):
            check(int(port) in [p["port"] for p in s["spec"]["ports"]], f"{overlay}: Service {host} has no port {port}")
            if dns:
                check(s["spec"].get("clusterIP") == "None", f"{overlay}: {addr} needs a headless Service")
    check_finite_run(overlay, objs, by, run)
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    check(any(p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == "learner" for p in pdbs),
          f"{overlay}: no PodDisruptionBudget for the learner")


def check_finite_run(overlay, objs, by, run):
    """The shape of a run that ends (issue 26): Jobs for learner and actors."""
    check(not [o for o in objs if o["kind"] == "StatefulSet"], f"{overlay}: a StatefulSet is left")
    for name in ("teacher", "reward"):
        check(("Deployment", name) in by, f"{overlay}: {name} is not a Deployment")
    learner, actor = by.get(("Job", "learner")), by.get(("Job", "actor"))
    if check(learner is not None, f"{overlay}: the learner is not a Job"):
        spec = learner["spec"]
        pod = spec["template"]["spec"]
        check(pod.get("restartPolicy") == "OnFailure",
              f"{overlay}: learner restartPolicy {pod.get('restartPolicy')}, want OnFailure")
        check(spec.get("completions") == 1 and spec.get("parallelism", 1) == 1,
              f"{overlay}: learner Job completions/parallelism {spec.get('completions')}/"
              f"{spec.get('parallelism')}, want 1/1")
        check(isinstance(spec.get("backoffLimit"), int) and spec["backoffLimit"] >= 1,
              f"{overlay}: learner Job without a backoffLimit")
        # output_dir (checkpoints, final/) survives a restarted pod: it is on a PVC.
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        c = pod["containers"][0]
        out = run["output_dir"]
        on_pvc = [m for m in c.get("volumeMounts", [])
                  if (out + "/").startswith(m["mountPath"].rstrip("/") + "/")
                  and "persistentVolumeClaim" in volumes.get(m["name"], {})
                  and not m.get("readOnly")]
        check(on_pvc, f"{overlay}: the learner's output_dir {out} is not on a writable PVC")
    if check(actor is not None, f"{overlay}: the actors are not a Job"):
        spec = actor["spec"]
        check(spec["template"]["spec"].get("restartPolicy") == "OnFailure",
              f"{overlay}: actor restartPolicy, want OnFailure")
        check("completions" not in spec,
              f"{overlay}: the actor Job sets completions (it is done when the learner is)")
        check(isinstance(spec.get("parallelism"), int) and spec["parallelism"] >= 1,
              f"{overlay}: the actor Job has no parallelism (the knob)")
        check(isinstance(spec.get("backoffLimit"), int) and spec["backoffLimit"] >= 1,
              f"{overlay}: actor Job without a backoffLimit")
        if overlay == "gpu":
            check(spec.get("parallelism") == 8, f"{overlay}: {spec.get('parallelism')} actors, want 8")
        # Liveness and readiness reflect progress: /healthz on the metrics port.
        c = spec["template"]["spec"]["containers"][0]
        metrics_port = port_of(run["services"]["actor_metrics_listen"])
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        for probe in ("livenessProbe", "readinessProbe"):
            get = c.get(probe, {}).get("httpGet", {})
            port = get.get("port")
            check(get.get("path") == "/healthz" and ports.get(port, port) == metrics_port,
                  f"{overlay}: actor {probe} is not GET /healthz on its metrics port")


def check_cuda_dockerfile(src):
    """The image the gpu overlay names: Debian 13's CUDA LibTorch from the apt mirror, nothing
    fetched from elsewhere by the Dockerfile (cuDNN comes through Debian's nvidia-cudnn or the
    stand-in), and what it copies and runs exists."""
    path = os.path.join(src, "deploy/docker/Dockerfile.cuda")
    if not check(os.path.exists(path), "deploy/docker/Dockerfile.cuda missing"):
        return
    lines = [l for l in open(path) if not l.lstrip().startswith("#")]
    text = "".join(lines)
    check("ARG BASE=debian:13" in text, "Dockerfile.cuda: base is not debian:13")
    check("libtorch-cuda-dev" in text, "Dockerfile.cuda: does not install libtorch-cuda-dev")
    check(not re.search(r"https?://", text), "Dockerfile.cuda: downloads from outside the apt mirror")
    for m in re.finditer(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for f in m.group(1).split():
            check(os.path.exists(os.path.join(src, f)), f"Dockerfile.cuda: COPY {f}: missing")


if __name__ == "__main__":
    sys.exit(main())
