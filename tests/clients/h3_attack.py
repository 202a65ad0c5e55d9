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
import sys

from aioquic.asyncio.client import connect
from aioquic.quic.events import ConnectionTerminated, StreamReset

from h3_common import ResponseProtocol, client_config


class Client(ResponseProtocol):
    header_encoding = "latin-1"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.error = None

    def finish(self, error=None):
        if error is not None and self.error is None:
            self.error = error
        if not self.done.done():
            self.done.set_result(None)

    def response_ended(self) -> None:
        self.finish()

    def connection_terminated(self, event: ConnectionTerminated) -> None:
        self.finish(
            f"connection closed: error_code=0x{event.error_code:x} "
            f"reason={event.reason_phrase!r}"
        )

    def stream_reset(self, event: StreamReset) -> bool:
        self.finish(f"stream reset: error_code=0x{event.error_code:x}")
        return True


async def one(args, case) -> dict:
    config = client_config(
        args.sni, args.ca, args.cert, args.key, verify=not args.no_verify
    )
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
