"""Webhook admission latency and throughput, against an aiohttp no-op webhook as the floor.

`wrk` (Debian package `wrk`: `apt-get install -y wrk`; the suite is skipped when it is absent)
drives `POST /mutate` over HTTPS on loopback with 8 connections and one thread, for `DURATION`
seconds per run, runs alternated floor / kuik / floor / kuik ... (`ROUNDS` each), medians kept.

- floor: a separate aiohttp process over the same TLS certificate that parses the review and
  answers `allowed: true` for its uid, nothing else;
- kuik: `kuik-webhook` in local mode with Redis, two ClusterImageSetMirrors in scope, AdmissionReviews
  of a Pod with 3 containers + 1 init container (two images missing on their registry, so
  rerouted; two present, so kept); caches warm (one admission before measuring) at the default
  `webhook.cacheTTL`: past it, verdicts on hosts the probes confirm up are served while revalidated
  in the background;
- kuik_without_reroute_logs: the same at `--log-level warning`: the webhook's own decision cost
  without the `rerouting image` line per rerouted container (two per admission here);
- outage: the same Pod's images on a registry that is a black hole (SIGSTOP: connections hang),
  which the registry health probes find down; the mirror holds the copies.

Targets (issue 7, raised by issue 15): kuik >= 0.75x the floor's throughput and p99 <= 5 ms;
outage p99 <= 10 ms.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
import yaml

import kuik_testing.objects as objects
from kuik_testing import RedisServer, RegistryServer, free_port, push_image, synthetic_image
from kuik_testing.processes import ServiceProcess

# Another source tree's kuik-webhook run alongside, alternated with the others (paired
# before/after comparison): `KUIK_BENCH_WEBHOOK_BEFORE=/path/to/old/tree/src/dirs:...`
BEFORE_PYTHONPATH = os.environ.get("KUIK_BENCH_WEBHOOK_BEFORE", "")
CONNECTIONS = 8
DURATION = 6
ROUNDS = 3

_NOOP = textwrap.dedent(
    """
    import json, ssl, sys
    from aiohttp import web

    async def mutate(request):
        review = json.loads(await request.read())
        uid = review["request"]["uid"]
        body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": uid, "allowed": True}}
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/mutate", mutate)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), ssl_context=context,
                access_log=None, print=None)
    """
)

UID = "0b1d6c1e-bench"
# the images of `_shop_pod`, as the mirrors select them
SHOP = {"include": [{"image": r"127\.0\.0\.1:\d+/shop/.*"}]}
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _find(pattern: str, output: str) -> str:
    match = re.search(pattern, output)
    if match is None:
        raise ValueError(f"no {pattern!r} in wrk output:\n{output}")
    return match.group(1)


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50/p99 (ms) and non-2xx count from `wrk --latency` output."""
    rps = float(_find(r"Requests/sec:\s+([\d.]+)", output))
    p50 = _seconds(_find(r"\s50%\s+(\S+)", output))
    p99 = _seconds(_find(r"\s99%\s+(\S+)", output))
    requests = float(_find(r"(\d+) requests in", output))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors:.*", output)
    return {
        "rps": rps,
        "requests": requests,
        "p50_ms": round(p50 * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 1.0 if socket_errors else 0.0,
    }


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (what it burnt, whatever else the machine runs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(url: str, script: Path, pid: int) -> dict[str, float]:
    before = _cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = parse_wrk(out)
    cpu = _cpu_seconds(pid) - before
    result["server_cpu_ms_per_request"] = round(cpu * 1000 / max(result["requests"], 1), 4)
    return result


def _handler_latency(metrics_url: str) -> dict[str, float]:
    """Admissions answered within 1 ms and 5 ms inside the handler (its own histogram)."""
    import urllib.request

    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    buckets: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(
            r'kube_image_keeper_webhook_admission_duration_seconds_bucket\{le="([^"]+)"\} (\S+)',
            line,
        )
        if match:
            buckets[match.group(1)] = float(match.group(2))
    total = buckets.get("+Inf", 0.0) or 1.0
    return {
        "admissions": total,
        "within_1ms": round(buckets.get("0.001", 0.0) / total, 4),
        "within_5ms": round(buckets.get("0.005", 0.0) / total, 4),
    }


def _shop_pod(host: str) -> dict[str, Any]:
    """The benchmark's Pod: three containers and an init container, all from `host`."""
    return objects.pod(
        *(objects.container(n, f"{host}/shop/{n}:1") for n in ("web", "api", "worker")),
        init=[objects.container("setup", f"{host}/shop/setup:1")],
        policy="IfNotPresent",
        namespace="bench",
        name="bench",
        labels={"app": "bench"},
    )


def _lua(path: Path, body: bytes) -> Path:
    script = path.with_suffix(".lua")
    escaped = body.decode().replace("\\", "\\\\").replace('"', '\\"')
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.body = "{escaped}"\n'
    )
    return script


def _check_reroutes(url: str, body: bytes, context: Any, expected: dict[str, str]) -> None:
    """One admission by hand: the benchmark measures the intended decisions, or it stops."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPSConnection(
        parts.hostname or "127.0.0.1", parts.port, context=context, timeout=10
    )
    connection.request("POST", parts.path, body, {"Content-Type": "application/json"})
    response = json.loads(connection.getresponse().read())["response"]
    connection.close()
    ops = json.loads(base64.b64decode(response.get("patch", "W10=")))
    got = {op["path"]: op["value"] for op in ops if op["path"].endswith("/image")}
    if got != expected:
        raise RuntimeError(f"unexpected decisions: {got} != {expected}")


@dataclass
class Setup:
    """The running servers of one benchmark: URLs, wrk scripts and the pids to measure."""

    kuik_url: str
    quiet_url: str
    noop_url: str
    kuik_pid: int
    quiet_pid: int
    noop_pid: int
    normal_script: Path
    outage_script: Path
    kuik_metrics_url: str
    before_url: str | None = None
    before_pid: int | None = None


@contextlib.contextmanager
def environment() -> Iterator[Setup]:
    """Registries, Redis, two kuik-webhook processes and the no-op floor, decisions checked."""
    work = Path(tempfile.mkdtemp(prefix="kuik-bench-webhook-"))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path = work / "tls.crt", work / "tls.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    context = ssl.create_default_context()
    ca.configure_trust(context)

    source, mirror, hole = RegistryServer(), RegistryServer(), RegistryServer()
    redis = RedisServer()
    processes: list[Any] = []
    try:
        for server in (source, mirror, hole, redis):
            server.start()
        for repo in ("setup", "api"):
            push_image(source, f"shop/{repo}", "1", synthetic_image(repo))
        for repo in ("setup", "web", "api", "worker"):
            for prefix in ("near", "far"):
                push_image(mirror, f"{prefix}/shop/{repo}", "1", synthetic_image(repo))
                push_image(hole, f"shop/{repo}", "1", synthetic_image(repo))
        cluster = work / "cluster"
        cluster.mkdir()
        (cluster / "crs.yaml").write_text(
            yaml.safe_dump_all(
                [
                    objects.cism(n, objects.mirror(mirror.host, n), priority=i, filter=SHOP)
                    for i, n in ((1, "near"), (2, "far"))
                ]
            )
        )
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump({"redis": {"keyPrefix": "bench:"}}))

        hole.freeze()  # the webhooks' health probes find it down at their first admission

        kuik_port, quiet_port, noop_port = free_port(), free_port(), free_port()
        before_port = free_port()
        variants: list[tuple[int, list[str], dict[str, str] | None]] = [
            (kuik_port, [], None),
            (quiet_port, ["--log-level", "warning"], None),
        ]
        if BEFORE_PYTHONPATH:
            variants.append((before_port, [], {"PYTHONPATH": BEFORE_PYTHONPATH}))
        for port, extra, env in variants:
            kuik = ServiceProcess(
                "webhook",
                [
                    "--config", str(config), "--cluster", f"dir:{cluster}",
                    "--redis-url", redis.url, "--listen", f"127.0.0.1:{port}",
                    "--tls-cert", str(cert_path), "--tls-key", str(key_path), *extra,
                ],
                log_dir=work,
                env=env,
            ).start()  # fmt: skip
            processes.append(kuik)
        noop = subprocess.Popen(
            [sys.executable, "-c", _NOOP, str(noop_port), str(cert_path), str(key_path)]
        )
        processes.append(noop)
        for process in processes[: len(variants)]:
            process.wait_ready()
        kuik_url = f"https://127.0.0.1:{kuik_port}/mutate"
        quiet_url = f"https://127.0.0.1:{quiet_port}/mutate"
        noop_url = f"https://127.0.0.1:{noop_port}/mutate"

        normal = objects.body(objects.review(_shop_pod(source.host), uid=UID))
        outage = objects.body(objects.review(_shop_pod(hole.host), uid=UID))
        normal_script, outage_script = _lua(work / "normal", normal), _lua(work / "outage", outage)
        near = f"{mirror.host}/near/shop"
        for url in (kuik_url, quiet_url):
            _check_reroutes(
                url,
                normal,
                context,
                {
                    "/spec/containers/0/image": f"{near}/web:1",
                    "/spec/containers/2/image": f"{near}/worker:1",
                },
            )
        _check_reroutes(
            kuik_url,
            outage,
            context,
            {
                "/spec/initContainers/0/image": f"{near}/setup:1",
                "/spec/containers/0/image": f"{near}/web:1",
                "/spec/containers/1/image": f"{near}/api:1",
                "/spec/containers/2/image": f"{near}/worker:1",
            },
        )
        deadline = time.monotonic() + 30
        while True:  # the no-op server is up when it answers
            try:
                _check_reroutes(noop_url, normal, context, {})
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        before_url = f"https://127.0.0.1:{before_port}/mutate" if BEFORE_PYTHONPATH else None
        if before_url is not None:
            _check_reroutes(
                before_url,
                normal,
                context,
                {
                    "/spec/containers/0/image": f"{near}/web:1",
                    "/spec/containers/2/image": f"{near}/worker:1",
                },
            )
        yield Setup(
            kuik_url,
            quiet_url,
            noop_url,
            processes[0].pid,
            processes[1].pid,
            noop.pid,
            normal_script,
            outage_script,
            processes[0].url("/metrics"),
            before_url,
            processes[2].pid if before_url is not None else None,
        )
    finally:
        hole.thaw()
        for process in processes:
            if isinstance(process, ServiceProcess):
                process.stop()
            else:
                process.terminate()
                process.wait(10)
        for server in (source, mirror, hole):
            server.cleanup()
        redis.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def run(rounds: int = ROUNDS) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        return {"skipped": "wrk not found (Debian: apt-get install -y wrk)"}
    with environment() as setup:
        runs: dict[str, list[dict[str, float]]] = {
            "floor": [],
            "kuik": [],
            "kuik_without_reroute_logs": [],
            "outage": [],
        }
        for _ in range(rounds):
            runs["floor"].append(_wrk(setup.noop_url, setup.normal_script, setup.noop_pid))
            runs["kuik"].append(_wrk(setup.kuik_url, setup.normal_script, setup.kuik_pid))
            runs["kuik_without_reroute_logs"].append(
                _wrk(setup.quiet_url, setup.normal_script, setup.quiet_pid)
            )
            runs["outage"].append(_wrk(setup.kuik_url, setup.outage_script, setup.kuik_pid))
            if setup.before_url is not None and setup.before_pid is not None:
                before = _wrk(setup.before_url, setup.normal_script, setup.before_pid)
                runs.setdefault("kuik_before", []).append(before)
        handler = _handler_latency(setup.kuik_metrics_url)
    summary: dict[str, Any] = {}
    for name, results in runs.items():
        summary[name] = {key: statistics.median(r[key] for r in results) for key in results[0]}
        summary[name]["runs_rps"] = [r["rps"] for r in results]
    ratio = summary["kuik"]["rps"] / summary["floor"]["rps"]
    cpu_ratio = (
        summary["floor"]["server_cpu_ms_per_request"] / summary["kuik"]["server_cpu_ms_per_request"]
    )
    before = {}
    if "kuik_before" in summary:
        paired = summary["kuik"]["rps"] / summary["kuik_before"]["rps"]
        before = {"kuik_vs_before_throughput": round(paired, 3)}
    return {
        "connections": CONNECTIONS,
        "duration_s": DURATION,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        **summary,
        "kuik_vs_floor_throughput": round(ratio, 3),
        # the throughput ratio an idle machine would show, if the server CPU is the limit
        "kuik_vs_floor_cpu_per_request": round(cpu_ratio, 3),
        # inside AdmissionHandler.handle (kuik and outage runs together): what is not queueing
        "kuik_handler_latency": handler,
        **before,
        "targets": {
            "throughput_ratio>=0.75": ratio >= 0.75,
            "kuik_p99<=5ms": summary["kuik"]["p99_ms"] <= 5,
            "outage_p99<=10ms": summary["outage"]["p99_ms"] <= 10,
        },
    }


def profile(out: Path, case: str = "kuik") -> None:
    """py-spy (dev dependency) samples one kuik process while wrk drives it: a flame graph."""
    with environment() as setup:
        pid = setup.quiet_pid if case == "quiet" else setup.kuik_pid
        url = setup.quiet_url if case == "quiet" else setup.kuik_url
        script = setup.outage_script if case == "outage" else setup.normal_script
        spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--rate", "1000", "--nonblocking",
             "--duration", str(DURATION), "--format", "speedscope" if out.suffix == ".json"
             else "flamegraph", "--output", str(out)]
        )  # fmt: skip
        time.sleep(0.5)
        print(json.dumps(_wrk(url, script, pid)))
        spy.wait(60)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "profile":
        # python -m bench.webhook profile OUT.svg|OUT.json [kuik|quiet|outage]
        profile(Path(sys.argv[2]), *sys.argv[3:4])
    else:
        print(json.dumps(run(int(os.environ.get("KUIK_BENCH_ROUNDS", ROUNDS))), indent=2))
