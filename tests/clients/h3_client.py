#!/usr/bin/env python3
"""A small HTTP/3 client on aioquic, independent of quinn/h3, for ward's tests.

    h3_client.py URL [--cert PEM --key PEM] --ca PEM [--connect IP]
                 [--method M] [--header 'name: value'] [--data TEXT]
                 [--timeout S] [--report-ticket]

Prints `status: N`, one `name: value` line per response header, an empty
line and the body. Exits 0 with a response, 2 when the connection fails or
is closed before a response arrives (a refused client certificate shows up
this way: in TLS 1.3 the client finishes its handshake before the server has
checked its certificate, so the refusal arrives as CONNECTION_CLOSE), 3 on a
timeout. `--report-ticket` waits briefly after the response and prints
`session_ticket: yes|no` and `max_early_data: N` (0-RTT needs a ticket).
"""

import argparse
import asyncio
import ssl
import sys
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.done = asyncio.get_event_loop().create_future()
        self.status = None
        self.headers = []
        self.body = b""
        self.terminated = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
            if not self.done.done():
                self.done.set_result(False)
            return
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                for name, value in ev.headers:
                    if name == b":status":
                        self.status = int(value)
                    else:
                        self.headers.append((name.decode(), value.decode()))
                if ev.stream_ended and not self.done.done():
                    self.done.set_result(True)
            elif isinstance(ev, DataReceived):
                self.body += ev.data
                if ev.stream_ended and not self.done.done():
                    self.done.set_result(True)


async def run(args) -> int:
    url = urlparse(args.url)
    host = url.hostname
    port = url.port or 443
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.server_name = host
    config.verify_mode = ssl.CERT_REQUIRED
    config.load_verify_locations(args.ca)
    if args.cert:
        config.load_cert_chain(args.cert, args.key)
    tickets = []
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    async with connect(
        args.connect or host,
        port,
        configuration=config,
        create_protocol=Client,
        session_ticket_handler=tickets.append,
    ) as client:
        stream_id = client._quic.get_next_available_stream_id()
        authority = host if url.port is None else f"{host}:{url.port}"
        headers = [
            (b":method", args.method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b"user-agent", b"ward-test-aioquic"),
        ]
        for h in args.header:
            name, _, value = h.partition(":")
            headers.append((name.strip().lower().encode(), value.strip().encode()))
        data = args.data.encode() if args.data is not None else None
        if data is not None and not any(n == b"content-length" for n, _ in headers):
            headers.append((b"content-length", str(len(data)).encode()))
        client.h3.send_headers(stream_id, headers, end_stream=data is None)
        if data is not None:
            client.h3.send_data(stream_id, data, end_stream=True)
        client.transmit()
        ok = await client.done
        if not ok:
            t = client.terminated
            print(
                f"connection closed: error_code=0x{t.error_code:x} reason={t.reason_phrase!r}",
                file=sys.stderr,
            )
            return 2
        print(f"status: {client.status}")
        for name, value in client.headers:
            print(f"{name}: {value}")
        print()
        sys.stdout.write(client.body.decode(errors="replace"))
        if args.report_ticket:
            await asyncio.sleep(0.5)
            print()
            print(f"session_ticket: {'yes' if tickets else 'no'}")
            early = max((t.max_early_data_size or 0 for t in tickets), default=0)
            print(f"max_early_data: {early}")
        sys.stdout.flush()
        return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--ca", required=True)
    p.add_argument("--connect", help="address to connect to instead of the URL's host")
    p.add_argument("--method", default="GET")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--data")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--report-ticket", action="store_true")
    args = p.parse_args()
    try:
        return asyncio.run(asyncio.wait_for(run(args), args.timeout))
    except (asyncio.TimeoutError, TimeoutError):
        print("timed out", file=sys.stderr)
        return 3
    except ConnectionError as e:
        print(f"connection failed: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
