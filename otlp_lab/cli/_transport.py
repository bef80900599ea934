"""``otlp-lab receive`` and ``otlp-lab send``."""

from __future__ import annotations

import os
import signal as signals
import sys
import threading
import time
from typing import Any

import click
from rich.table import Table

from otlp_lab.errors import OtlpLabError

from ._common import console, fail, protocol_option
from ._group import main

MiB = 1 << 20


def _address(value: str | None) -> str | None:
    if value is None or value.strip().lower() in ("", "off", "none", "no"):
        return None
    return value


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"must look like 'name=value'. Got {v!r} instead.", param_hint=what)
        out[key.strip().lower()] = val.strip()
    return out


def _stats_table(title: str, stats: Any) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    t.add_column("counter")
    t.add_column("value", justify="right")
    for name in (
        "requests",
        "accepted",
        "spans",
        "points",
        "logs",
        "rejected_items",
        "invalid",
        "too_large",
        "unsupported",
        "unauthenticated",
        "backpressure",
        "failed",
        "transactions",
        "peak_queue_bytes",
    ):
        value = getattr(stats, name)
        if value or name in ("requests", "accepted"):
            t.add_row(name, f"{value:,}")
    return t


@main.command()
@click.option(
    "--db",
    required=True,
    type=click.Path(dir_okay=False),
    help="DuckDB file to store into (created if missing).",
)
@click.option(
    "--grpc",
    "grpc_addr",
    default="127.0.0.1:4317",
    show_default=True,
    envvar="OTLP_LAB_GRPC",
    help="OTLP/gRPC listen address ('off' to disable; port 0 = any free port).",
)
@click.option(
    "--http",
    "http_addr",
    default="127.0.0.1:4318",
    show_default=True,
    envvar="OTLP_LAB_HTTP",
    help="OTLP/HTTP listen address ('off' to disable).",
)
@click.option("--max-request-mib", default=16.0, show_default=True, help="Largest request, decompressed.")
@click.option(
    "--queue-mib",
    default=64.0,
    show_default=True,
    help="Requests waiting for their transaction; beyond it, backpressure.",
)
@click.option(
    "--retry-after",
    default=1.0,
    show_default=True,
    help="Seconds of pushback sent with backpressure replies.",
)
@click.option(
    "--token", envvar="OTLP_LAB_TOKEN", help="Require 'Authorization: Bearer TOKEN' (env OTLP_LAB_TOKEN)."
)
@click.option(
    "--require-header", multiple=True, metavar="NAME=VALUE", help="Require this header (repeatable)."
)
@click.option(
    "--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Serve TLS with this certificate (PEM)."
)
@click.option(
    "--tls-key", type=click.Path(exists=True, dir_okay=False), help="Private key of --tls-cert (PEM)."
)
@click.option(
    "--client-ca",
    type=click.Path(exists=True, dir_okay=False),
    help="Require client certificates signed by this CA (mTLS).",
)
@click.option("--allow-remote", is_flag=True, help="Allow listening on a non-loopback address.")
@click.option(
    "--wal",
    "wal_dir",
    type=click.Path(file_okay=False),
    help="Acknowledge after an fsync'd append to a write-ahead log in this directory and load into "
    "the database behind it, in large transactions (faster; a restart loads what is left).",
)
@click.option(
    "--wal-delay",
    default=0.0,
    show_default=True,
    help="With --wal: seconds requests stay in the log before loading (larger transactions).",
)
@click.option("--duration", type=float, help="Stop by itself after this many seconds.")
@click.option(
    "--stats-every", default=5.0, show_default=True, help="Seconds between live status lines (0: none)."
)
def receive(
    db: str,
    grpc_addr: str | None,
    http_addr: str | None,
    max_request_mib: float,
    queue_mib: float,
    retry_after: float,
    token: str | None,
    require_header: tuple[str, ...],
    tls_cert: str | None,
    tls_key: str | None,
    client_ca: str | None,
    allow_remote: bool,
    wal_dir: str | None,
    wal_delay: float,
    duration: float | None,
    stats_every: float,
) -> None:
    """Receive OTLP over gRPC and HTTP and store it in a DuckDB file until Ctrl-C (or SIGTERM).

    Every request is acknowledged only after it is committed (with --wal: appended to the
    write-ahead log and synced), so a crash loses nothing that was acknowledged; a clean stop
    commits what is queued first.
    """
    from otlp_lab.transport import Receiver, ReceiverConfig, ServerTls

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together.")
    if client_ca and not tls_cert:
        raise click.UsageError("--client-ca (mTLS) needs --tls-cert and --tls-key.")
    stop = threading.Event()
    try:
        config = ReceiverConfig(
            grpc=_address(grpc_addr),
            http=_address(http_addr),
            max_request_bytes=int(max_request_mib * MiB),
            max_queue_bytes=int(queue_mib * MiB),
            retry_after_s=retry_after,
            bearer_token=token,
            headers=_pairs(require_header, "--require-header"),
            tls=ServerTls(cert_file=tls_cert, key_file=tls_key, client_ca_file=client_ca)
            if tls_cert and tls_key
            else None,
            allow_remote=allow_remote,
            wal_dir=wal_dir,
            wal_delay_s=wal_delay,
        )
        receiver = Receiver(db, config=config).start()
    except OtlpLabError as exc:
        fail(exc)
    for sig in (signals.SIGINT, signals.SIGTERM):
        signals.signal(sig, lambda *_: stop.set())
    for name, ep in (("OTLP/gRPC", receiver.grpc_endpoint), ("OTLP/HTTP", receiver.http_endpoint)):
        if ep:
            console.print(f"{name} listening on [bold]{ep}[/]", highlight=False)
    console.print(
        f"storing into [bold]{db}[/]; Ctrl-C stops (queued requests are committed first)", highlight=False
    )
    if receiver.http_endpoint:
        console.print(
            f"live queries meanwhile: otlp-lab sql --db {db} 'SELECT ...' (or otlp-lab info --db {db})",
            highlight=False,
        )
    sys.stdout.flush()
    t_end = time.monotonic() + duration if duration else None
    last = None
    while not stop.is_set():
        wait = stats_every if stats_every > 0 else 1.0
        if t_end is not None:
            wait = max(0.0, min(wait, t_end - time.monotonic()))
        stop.wait(wait)
        if t_end is not None and time.monotonic() >= t_end:
            break
        s = receiver.stats
        if stats_every > 0 and s != last and not stop.is_set():
            console.print(
                f"requests {s.requests:,}  spans {s.spans:,}  points {s.points:,}  logs {s.logs:,}  "
                f"refused {s.invalid + s.too_large + s.unsupported + s.unauthenticated:,}  "
                f"backpressure {s.backpressure:,}  queue {s.queue_depth:,}",
                highlight=False,
            )
            sys.stdout.flush()
            last = s
    console.print("stopping: finishing requests in flight and committing the queue...")
    final = receiver.stop()
    console.print(_stats_table("Receiver totals", final))


@main.command()
@click.argument("files", nargs=-1)
@click.option(
    "--db",
    type=click.Path(exists=True, dir_okay=False),
    help="Send the contents of this DuckDB file instead of FILES.",
)
@click.option(
    "--signal",
    "signal_",
    type=click.Choice(["traces", "metrics", "logs"]),
    multiple=True,
    help="Only these signals (repeatable; all by default).",
)
@click.option("--where", help="SQL condition on the rows to send (with --db and one --signal).")
@click.option(
    "--endpoint",
    envvar="OTEL_EXPORTER_OTLP_ENDPOINT",
    help="Where to send: http://host:4318 (HTTP), host:4317 or https://host:4317 (gRPC). Env OTEL_EXPORTER_OTLP_ENDPOINT.",
)
@protocol_option()
@click.option(
    "--header", multiple=True, metavar="NAME=VALUE", help="Header sent with every request (repeatable)."
)
@click.option(
    "--compression",
    type=click.Choice(["gzip", "none"]),
    default=None,
    help="Default gzip (env OTEL_EXPORTER_OTLP_COMPRESSION).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    help="Seconds per attempt (default 10; env OTEL_EXPORTER_OTLP_TIMEOUT in ms).",
)
@click.option("--concurrency", default=4, show_default=True, help="Requests in flight at once.")
@click.option("--max-items", default=512, show_default=True, help="Spans, points or log records per request.")
@click.option("--max-bytes", default=4 * MiB, show_default=True, help="Serialized bytes per request.")
@click.option("--max-attempts", default=6, show_default=True, help="Attempts per request, retries included.")
@click.option(
    "--no-breaker", is_flag=True, help="Keep trying every request even when the endpoint looks down."
)
@click.option(
    "--ca",
    type=click.Path(exists=True, dir_okay=False),
    help="CA bundle to verify the server (env OTEL_EXPORTER_OTLP_CERTIFICATE).",
)
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="Client certificate for mTLS.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Client key for mTLS.")
@click.option(
    "--shift-to-now/--keep-timestamps",
    default=False,
    show_default=True,
    help="Rewrite timestamps so the data starts now (scaled by --speed).",
)
@click.option(
    "--speed", type=float, help="Replay paced on the wall clock, this many times faster than recorded."
)
@click.option(
    "--queue",
    "queue_dir",
    type=click.Path(file_okay=False),
    help="Store-and-forward: persist every request here (fsynced) until the peer acknowledges it; "
    "what could not be delivered is sent first next time (give only --queue to send just that).",
)
@click.option(
    "--queue-max-mib",
    default=256.0,
    show_default=True,
    help="Bytes waiting in --queue beyond which new requests are dropped (counted and logged).",
)
def send(
    files: tuple[str, ...],
    db: str | None,
    signal_: tuple[str, ...],
    where: str | None,
    endpoint: str | None,
    protocol: str,
    header: tuple[str, ...],
    compression: str | None,
    timeout_s: float | None,
    concurrency: int,
    max_items: int,
    max_bytes: int,
    max_attempts: int,
    no_breaker: bool,
    ca: str | None,
    cert: str | None,
    key: str | None,
    shift_to_now: bool,
    speed: float | None,
    queue_dir: str | None,
    queue_max_mib: float,
) -> None:
    """Send OTLP FILES (or a --db) to a collector or receiver; report sent, rejected and failed items.

    Exit status 0 when everything was delivered, 1 when something failed (the errors are
    listed with what to do), 2 on a usage or input error.
    """
    from otlp_lab.transport import ClientTls, Replay, Sender
    from otlp_lab.transport._sender import parse_headers

    if files and db:
        raise click.UsageError("give FILES or --db (one of them).")
    if not files and not db and not queue_dir:
        raise click.UsageError("give FILES or --db (or only --queue DIR to send what waits there).")
    if where and not db:
        raise click.UsageError("--where filters a --db.")
    try:
        overrides: dict[str, Any] = {
            "protocol": protocol,
            "concurrency": concurrency,
            "max_items": max_items,
            "max_bytes": max_bytes,
        }
        env_headers = parse_headers(os.environ.get("OTEL_EXPORTER_OTLP_HEADERS"))
        overrides["headers"] = env_headers | _pairs(header, "--header")
        if endpoint:
            overrides["endpoint"] = endpoint
        if compression:
            overrides["compression"] = compression
        if timeout_s:
            overrides["timeout_s"] = timeout_s
        if ca or cert or key:
            overrides["tls"] = ClientTls(ca_file=ca, cert_file=cert, key_file=key)
        if no_breaker:
            overrides["breaker"] = None
        if queue_dir:
            overrides["queue_dir"] = queue_dir
            overrides["queue_max_bytes"] = max(1, int(queue_max_mib * MiB))
        if max_attempts != 6:
            from dataclasses import replace

            overrides["retry"] = replace(Sender.default_retry(), max_attempts=max_attempts)
        sender = Sender.from_env(**overrides)
        replay = None
        if shift_to_now or speed:
            replay = Replay(shift_to_now=shift_to_now, speed=speed or 1.0, paced=speed is not None)
        sig = list(signal_) or None
        console.print(f"sending to [bold]{sender.target.url}[/] over {sender.protocol}", highlight=False)
        if not files and not db:
            report = sender.send_queue()
        elif db:
            from otlp_lab import Lab

            with Lab(db, read_only=True) as lab:
                report = sender.send_lab(lab, sig, where=where, replay=replay)  # type: ignore[arg-type]
        else:
            if sig is not None and len(sig) > 1:
                raise click.UsageError("with FILES, give at most one --signal.")
            report = sender.send_files(*files, signal=sig[0] if sig else None, replay=replay)  # type: ignore[arg-type]
    except OtlpLabError as exc:
        fail(exc)
    _print_report(report)
    if report.queued:
        console.print(
            f"[yellow]{report.queued:,} items wait in the queue {queue_dir}[/]: the peer could not take them; "
            f"run `otlp-lab send --queue {queue_dir}` again to deliver them.",
            highlight=False,
        )
    if report.failed or report.failed_requests or report.queued:
        sys.exit(1)


def _print_report(report: Any) -> None:
    t = Table(title=f"Sent in {report.duration_s:.2f} s", title_justify="left", header_style="bold")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_row("items sent", f"{report.sent:,}")
    t.add_row("items rejected (partial success)", f"{report.rejected:,}")
    t.add_row("items failed", f"{report.failed:,}")
    if report.queue is not None:
        t.add_row("items from the queue (earlier runs)", f"{report.recovered:,}")
        t.add_row("items left in the queue", f"{report.queued:,}")
        t.add_row("items dropped (queue full)", f"{report.dropped:,}")
        if report.queue.corrupt:
            t.add_row("damaged queue records skipped", f"{report.queue.corrupt:,}")
    t.add_row("requests", f"{report.requests:,}")
    t.add_row("retries", f"{report.retries:,}")
    t.add_row("items/s", f"{report.items_per_s:,.0f}")
    p50, p99 = report.latency_ms(0.5), report.latency_ms(0.99)
    if p50 is not None and p99 is not None:
        t.add_row("latency p50 / p99", f"{p50:.1f} / {p99:.1f} ms")
    console.print(t)
    for msg in report.messages[:5]:
        console.print(f"[yellow]partial success:[/] {msg}", highlight=False)
    shown = set()
    for err in report.errors:
        if err.status in shown:
            continue
        shown.add(err.status)
        n = report.error_counts.get(err.status, 1)
        console.print(f"[bold red]{n:,} requests failed ({err.status}):[/] {err.reason}", highlight=False)
        if err.hint:
            console.print(f"  [bold]what to do:[/] {err.hint}", highlight=False)
