#!/usr/bin/env python3
"""Sends hand-made HTTP/3 requests with aioquic, for ward's attack tests.

    h3_attack.py --port N --ca PEM [--cert PEM --key PEM] [--sni NAME]
                 [--timeout S] [--no-verify] CASES.json

CASES.json is a list of cases; each is an object with `headers`, a list of
`[name, value]` pairs sent exactly as given, pseudo-headers included, in that
order (strings are encoded as Latin-1, so `"\\u00c0"` is the byte 0xC0), and
optionally `data` (a body). Nothing is added, validated or normalised:
aioquic's `H3Connection.send_headers` QPACK-encodes the list as it is, which
is the point (tests/clients/h3_client.py builds `:path` from a parsed URL
and so cannot send every trick).

Every case gets its own QUIC connection, so that a case the gateway answers
by closing the connection cannot spoil the next one. Prints one JSON object
per case, in order: `status` (null without a response), `headers`, `body`,
and `error` (why there was no response: connection closed, stream reset,
timeout). Exits 0 when every case ran, whatever the gateway answered.
"""

import argparse
import asyncio
import json
import ssl
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.done = asyncio.get_event_loop().create_future()
        self.status = None
        self.headers = []
        self.body = b""
        self.error = None

    def finish(self, error=None):
        if error is not None and self.error is None:
            self.error = error
        if not self.done.done():
            self.done.set_result(None)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.finish(
                f"connection closed: error_code=0x{event.error_code:x} "
                f"reason={event.reason_phrase!r}"
            )
            return
        if isinstance(event, StreamReset):
            self.finish(f"stream reset: error_code=0x{event.error_code:x}")
            return
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                for name, value in ev.headers:
                    if name == b":status":
                        self.status = int(value)
                    else:
                        self.headers.append(
                            [name.decode("latin-1"), value.decode("latin-1")]
                        )
                if ev.stream_ended:
                    self.finish()
            elif isinstance(ev, DataReceived):
                self.body += ev.data
                if ev.stream_ended:
                    self.finish()


async def one(args, case) -> dict:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.server_name = args.sni
    if args.no_verify:
        config.verify_mode = ssl.CERT_NONE
    else:
        config.verify_mode = ssl.CERT_REQUIRED
        config.load_verify_locations(args.ca)
    if args.cert:
        config.load_cert_chain(args.cert, args.key)
    headers = [
        (n.encode("latin-1"), v.encode("latin-1")) for n, v in case["headers"]
    ]
    data = case.get("data")
    client = None
    try:
        async with connect(
            "127.0.0.1", args.port, configuration=config, create_protocol=Client
        ) as client:
            stream_id = client._quic.get_next_available_stream_id()
            client.h3.send_headers(stream_id, headers, end_stream=data is None)
            if data is not None:
                client.h3.send_data(stream_id, data.encode("latin-1"), end_stream=True)
            client.transmit()
            await asyncio.wait_for(client.done, args.timeout)
    except (asyncio.TimeoutError, TimeoutError):
        if client is not None:
            client.finish("timed out")
        else:
            return {"status": None, "headers": [], "body": "", "error": "timed out"}
    except Exception as e:  # noqa: BLE001 - every failure is an outcome here
        if client is None:
            return {"status": None, "headers": [], "body": "", "error": f"connect: {e!r}"}
        client.finish(f"client error: {e!r}")
    return {
        "status": client.status,
        "headers": client.headers,
        "body": client.body.decode("latin-1"),
        "error": None if client.status is not None else client.error,
    }


async def run(args, cases) -> None:
    for case in cases:
        result = await one(args, case)
        print(json.dumps(result), flush=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("cases")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--sni", default="app.test")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="do not verify the gateway's certificate (for an SNI it need not cover)",
    )
    args = p.parse_args()
    with open(args.cases, encoding="utf-8") as f:
        cases = json.load(f)
    asyncio.run(run(args, cases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
