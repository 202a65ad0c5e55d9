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
import sys
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.quic.events import ConnectionTerminated

from h3_common import ResponseProtocol, client_config


class Client(ResponseProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.terminated = None

    def response_ended(self) -> None:
        if not self.done.done():
            self.done.set_result(True)

    def connection_terminated(self, event: ConnectionTerminated) -> None:
        self.terminated = event
        if not self.done.done():
            self.done.set_result(False)


async def run(args) -> int:
    url = urlparse(args.url)
    host = url.hostname
    port = url.port or 443
    config = client_config(host, args.ca, args.cert, args.key)
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
