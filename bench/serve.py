"""Server load: wrk against `publisher serve` and nginx serving the same public/ folder.

Installs nothing: it needs `wrk` and `nginx` (Debian: apt-get install -y wrk nginx) and skips
what is missing with a message. It builds a public/ from the seeds plus synthetic articles,
starts `publisher serve` and nginx (a temporary nginx.conf, `daemon off`, pid and logs in
the temp dir) on free loopback ports, and runs wrk (64 connections, --latency) for:

- atom.xml, a plain GET (no Accept-Encoding: the whole body every time),
- atom.xml, a conditional GET with If-None-Match = the current ETag, answered 304,
- index.html, a plain GET.

Each (server, case) runs --runs times, interleaved; the median requests/s, its p99 latency
and the error counts of all runs are printed side by side with the ratio publisher/nginx,
and appended to bench/results.md with the machine and the load average.

    python bench/serve.py                    # 3 runs x 10 s per case and server
    python bench/serve.py --duration 3 --runs 1
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.synthetic import generate  # (run as a script: the project root on sys.path)

RESULTS = ROOT / "bench" / "results.md"
CONNECTIONS = 64

NGINX_CONF = """\
{user}worker_processes {workers};
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    types {{ application/atom+xml atom.xml; application/rss+xml rss.xml; application/feed+json json; }}
    default_type application/octet-stream;
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    sendfile on;
    keepalive_requests 100000;
    etag on;
    server {{
        listen 127.0.0.1:{port};
        root {public};
        index index.html;
    }}
}}
"""

CONDITIONAL_LUA = """\
wrk.headers["If-None-Match"] = '{etag}'
"""


@dataclass
class WrkRun:
    requests_per_second: float
    p99_ms: float
    errors: int  # socket errors (connect/read/write/timeout) + non-2xx/3xx answers
    detail: str


@dataclass
class Case:
    name: str
    path: str
    conditional: bool = False
    runs: dict[str, list[WrkRun]] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            response.read()
            return
        time.sleep(0.1)
    raise SystemExit(f"no answer from {url} within {timeout}s")


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """(status, ETag) of one GET; urllib raises on 304, which is an answer here."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
            return response.status, response.headers.get("ETag", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("ETag", "")


@contextlib.contextmanager
def process(command: list[str], log: Path, **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    """A server in the background; SIGTERM (then SIGKILL after 10 s) when done."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


def build_site(folder: Path, articles: int, port: int) -> Path:
    """public/ from the five seeds and `articles` synthetic ones, via the real CLI."""
    inbox = folder / "inbox"
    shutil.copytree(ROOT / "seeds", inbox)
    for _ in generate(articles, inbox, seed=3):
        pass
    config = folder / "publisher.toml"
    config.write_text(
        f'database_url = "sqlite:///{folder / "publisher.db"}"\n'
        f'inbox = "{inbox}"\noutput_dir = "{folder / "public"}"\n'
        f'base_url = "http://127.0.0.1:{port}/"\nsecret_key = "bench-serve-secret-of-at-least-32-bytes"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    publisher = [sys.executable, "-m", "publisher", "--config", str(config)]
    subprocess.run([*publisher, "ingest"], check=False, capture_output=True, timeout=900)
    subprocess.run([*publisher, "build"], check=True, capture_output=True, timeout=900)
    return config


_LATENCY = re.compile(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def wrk(url: str, duration: int, script: Path | None) -> WrkRun:
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=duration + 60, check=False
    ).stdout
    rps = _RPS.search(out)
    latency = _LATENCY.search(out)
    if rps is None or latency is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[latency.group(2)]
    socket_errors = _SOCKET.search(out)
    non_2xx = _NON_2XX.search(out)
    errors = (sum(int(g) for g in socket_errors.groups()) if socket_errors else 0) + (
        int(non_2xx.group(1)) if non_2xx else 0
    )
    detail = ", ".join(
        part
        for part in (
            socket_errors.group(0) if socket_errors else "",
            non_2xx.group(0) if non_2xx else "",
        )
        if part
    )
    return WrkRun(float(rps.group(1)), float(latency.group(1)) * scale, errors, detail)


def version(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    text = (result.stdout + result.stderr).strip().splitlines()
    return text[0] if text else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, default=3, help="runs per server and case (median)")
    parser.add_argument(
        "--articles", type=int, default=300, help="synthetic articles besides the seeds"
    )
    parser.add_argument(
        "--nginx-workers",
        default="1",
        help="nginx worker_processes (1: one core, like publisher serve)",
    )
    parser.add_argument(
        "--no-append", action="store_true", help="print only; leave results.md alone"
    )
    args = parser.parse_args()

    wrk_path = shutil.which("wrk")
    nginx_path = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if wrk_path is None:
        print("skipped: wrk is not installed (Debian: apt-get install -y wrk)")
        return 0
    if nginx_path is None:
        print("note: nginx is not installed (Debian: apt-get install -y nginx); publisher only")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)  # nginx workers read public/ from here
        publisher_port, nginx_port = free_port(), free_port()
        print(f"building public/ from the seeds + {args.articles} synthetic articles ...")
        config = build_site(tmp, args.articles, publisher_port)
        public = tmp / "public"
        files = sum(1 for p in public.rglob("*") if p.is_file())
        atom_size = (public / "atom.xml").stat().st_size
        index_size = (public / "index.html").stat().st_size

        servers: dict[str, str] = {}
        with contextlib.ExitStack() as stack:
            serve = [
                sys.executable, "-m", "publisher", "--config", str(config),
                "serve", "--host", "127.0.0.1", "--port", str(publisher_port),
            ]  # fmt: skip
            stack.enter_context(process(serve, tmp / "publisher-serve.log"))
            servers["publisher"] = f"http://127.0.0.1:{publisher_port}"
            if nginx_path is not None:
                user = "user root;\n" if os.geteuid() == 0 else ""
                conf = tmp / "nginx.conf"
                conf.write_text(
                    NGINX_CONF.format(
                        user=user,
                        workers=args.nginx_workers,
                        tmp=tmp,
                        port=nginx_port,
                        public=public,
                    ),
                    encoding="utf-8",
                )
                stack.enter_context(
                    process([nginx_path, "-c", str(conf), "-p", str(tmp)], tmp / "nginx-stdout.log")
                )
                servers["nginx"] = f"http://127.0.0.1:{nginx_port}"
            for base in servers.values():
                wait_http(base + "/atom.xml")

            cases = [
                Case("GET atom.xml", "/atom.xml"),
                Case("conditional GET atom.xml (304)", "/atom.xml", conditional=True),
                Case("GET index.html", "/index.html"),
            ]
            scripts: dict[str, Path] = {}
            for name, base in servers.items():
                status, etag = get(base + "/atom.xml")
                check, _ = get(base + "/atom.xml", {"If-None-Match": etag})
                if status != 200 or check != 304:
                    raise SystemExit(
                        f"{name}: atom.xml {status}, conditional {check} (want 200, 304)"
                    )
                scripts[name] = tmp / f"conditional-{name}.lua"
                scripts[name].write_text(CONDITIONAL_LUA.format(etag=etag), encoding="utf-8")

            for case in cases:
                for run in range(args.runs):
                    for name, base in servers.items():
                        script = scripts[name] if case.conditional else None
                        result = wrk(base + case.path, args.duration, script)
                        case.runs.setdefault(name, []).append(result)
                        print(
                            f"  {case.name:32} {name:9} run {run + 1}: {result.requests_per_second:9.0f} req/s"
                            f"  p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
                            + (f" ({result.detail})" if result.detail else "")
                        )
        publisher_log = (tmp / "publisher-serve.log").read_text(errors="replace")
        nginx_errors = (tmp / "nginx-error.log").read_text(errors="replace") if nginx_path else ""
    load_after = os.getloadavg()

    rows = []
    for case in cases:
        cells = {}
        for name, runs in case.runs.items():
            median = statistics.median(r.requests_per_second for r in runs)
            middle = min(runs, key=lambda r: abs(r.requests_per_second - median))
            cells[name] = (
                median,
                middle.p99_ms,
                sum(r.errors for r in runs),
                [r.requests_per_second for r in runs],
            )
        rows.append((case.name, cells))

    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## serve — {when}, wrk {CONNECTIONS} connections x {args.duration} s, median of {args.runs}, {machine}",
        "",
        f"{version(['wrk', '--version'])}; {version([nginx_path, '-v']) if nginx_path else 'nginx: not installed'} "
        f"(worker_processes {args.nginx_workers}); `publisher serve` = one uvicorn process. "
        f"public/: {files} files from 5 seeds + {args.articles} synthetic articles; atom.xml "
        f"{atom_size:,} B, index.html {index_size:,} B, no Accept-Encoding (full bodies). "
        f"Load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, "
        f"after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}; wrk runs on the same cores.",
        "",
        "| case | publisher req/s | p99 ms | errors | nginx req/s | p99 ms | errors | publisher / nginx |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, cells in rows:
        pub = cells["publisher"]
        ngx = cells.get("nginx")
        ratio = f"{pub[0] / ngx[0]:.2f}" if ngx and ngx[0] else "n/a"
        nginx_cells = f"{ngx[0]:,.0f} | {ngx[1]:.2f} | {ngx[2]}" if ngx else "n/a | n/a | n/a"
        lines.append(
            f"| {name} | {pub[0]:,.0f} | {pub[1]:.2f} | {pub[2]} | {nginx_cells} | {ratio} |"
        )
    lines.append("")
    lines.append(
        "Runs (req/s): "
        + "; ".join(
            f"{name} {server}: {', '.join(f'{v:,.0f}' for v in cell[3])}"
            for name, cells in rows
            for server, cell in cells.items()
        )
    )
    tracebacks = publisher_log.count("Traceback")
    lines.append(
        f"publisher serve log: {tracebacks} tracebacks; nginx error log: "
        f"{len([line for line in nginx_errors.splitlines() if '[error]' in line or '[crit]' in line])} errors."
    )
    lines.append("")
    text = "\n".join(lines)
    print()
    print(text)
    if tracebacks:
        print(publisher_log[publisher_log.index("Traceback") :][:3000])
    if not args.no_append:
        with RESULTS.open("a", encoding="utf-8") as results:
            results.write("\n" + text + "\n")
        print(f"appended to {RESULTS.relative_to(ROOT)}")
    return 1 if any(cell[2] for _, cells in rows for cell in cells.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
