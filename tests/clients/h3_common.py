"""What ward's two aioquic HTTP/3 test clients share (imported by
`h3_client.py` and `h3_attack.py`, which sit next to it): the client TLS
configuration and a protocol that gathers one response (status, headers,
body) from the HTTP/3 events. Each script keeps its own command line and
its own idea of how a request ends badly.
"""

import asyncio
import ssl

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset


def client_config(server_name, ca, cert=None, key=None, verify=True):
    """A QUIC client configuration for HTTP/3: SNI `server_name`, the
    gateway's certificate checked against `ca` unless `verify` is false,
    and the client certificate `cert`/`key` if given."""
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.server_name = server_name
    if verify:
        config.verify_mode = ssl.CERT_REQUIRED
        config.load_verify_locations(ca)
    else:
        config.verify_mode = ssl.CERT_NONE
    if cert:
        config.load_cert_chain(cert, key)
    return config


class ResponseProtocol(QuicConnectionProtocol):
    """Collects one response: `status`, `headers` (name, value) decoded with
    `header_encoding`, and `body`. Subclasses say what the end of the
    response (`response_ended`), the end of the connection
    (`connection_terminated`) and a stream reset (`stream_reset`, return
    true when handled) mean to them."""

    header_encoding = "utf-8"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.done = asyncio.get_event_loop().create_future()
        self.status = None
        self.headers = []
        self.body = b""

    def response_ended(self) -> None:
        raise NotImplementedError

    def connection_terminated(self, event: ConnectionTerminated) -> None:
        raise NotImplementedError

    def stream_reset(self, event: StreamReset) -> bool:
        return False

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.connection_terminated(event)
            return
        if isinstance(event, StreamReset) and self.stream_reset(event):
            return
        enc = self.header_encoding
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                for name, value in ev.headers:
                    if name == b":status":
                        self.status = int(value)
                    else:
                        self.headers.append((name.decode(enc), value.decode(enc)))
                if ev.stream_ended:
                    self.response_ended()
            elif isinstance(ev, DataReceived):
                self.body += ev.data
                if ev.stream_ended:
                    self.response_ended()
