#!/usr/bin/env python3
"""A WebSocket client over HTTP/2 (RFC 8441 extended CONNECT) on the `h2`
library, independent of hyper, for ward's tests.

    ws_h2_client.py --connect IP:PORT --authority HOST[:PORT] --path /ws
                    --ca PEM [--cert PEM --key PEM] [--timeout S]

Opens TLS (ALPN h2, client certificate if given), waits for the server's
SETTINGS, and sends `CONNECT` with `:protocol: websocket` on one stream.
Each line read from stdin is sent as one masked WebSocket text frame on that
stream. Prints one line per event, flushed:

    settings enable_connect_protocol=N   the server's SETTINGS value
    header NAME: VALUE                   each response header
    status N                             response status (after its headers)
    message TEXT                         a WebSocket text frame received
    body TEXT                            response body of a refused CONNECT
    end                                  the server ended the stream
    reset CODE                           the server reset the stream
    goaway / closed                      the connection ended

Exits 0 when the connection ends or after --timeout seconds.
"""

import argparse
import os
import select
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


def say(line: str) -> None:
    print(line, flush=True)


def ws_frame(text: str) -> bytes:
    """A final, masked text frame (clients must mask, RFC 6455 §5.3)."""
    payload = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def ws_parse(buf: bytearray):
    """Complete frames at the front of `buf` (removed): (opcode, payload)."""
    frames = []
    while len(buf) >= 2:
        opcode = buf[0] & 0x0F
        masked = buf[1] & 0x80
        n = buf[1] & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                break
            n = struct.unpack("!H", bytes(buf[2:4]))[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                break
            n = struct.unpack("!Q", bytes(buf[2:10]))[0]
            pos = 10
        mask = b""
        if masked:
            mask = bytes(buf[pos : pos + 4])
            pos += 4
        if len(buf) < pos + n:
            break
        payload = bytes(buf[pos : pos + n])
        if masked:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        del buf[: pos + n]
        frames.append((opcode, payload))
    return frames


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--connect", required=True)
    p.add_argument("--authority", required=True)
    p.add_argument("--path", default="/")
    p.add_argument("--ca", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args()

    host, port = args.connect.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((host, int(port)), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname=args.authority.split(":")[0])
    if tls.selected_alpn_protocol() != "h2":
        say(f"alpn {tls.selected_alpn_protocol()}")
        return 1
    tls.setblocking(False)

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    deadline = time.monotonic() + args.timeout
    stream_id = None
    status = None
    ws_buf = bytearray()
    stdin_buf = b""
    stdin_open = True

    def flush() -> None:
        data = conn.data_to_send()
        if data:
            tls.setblocking(True)
            tls.sendall(data)
            tls.setblocking(False)

    def open_stream() -> int:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(
            sid,
            [
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "https"),
                (":path", args.path),
                (":authority", args.authority),
                ("sec-websocket-version", "13"),
            ],
            end_stream=False,
        )
        flush()
        return sid

    while time.monotonic() < deadline:
        readable = [tls]
        if stdin_open and status == 200:
            readable.append(sys.stdin)
        if tls.pending() == 0:
            ready, _, _ = select.select(readable, [], [], 0.2)
        else:
            ready = [tls]
        if sys.stdin in ready:
            chunk = os.read(sys.stdin.fileno(), 65536)
            if not chunk:
                stdin_open = False
            stdin_buf += chunk
            while b"\n" in stdin_buf:
                line, stdin_buf = stdin_buf.split(b"\n", 1)
                try:
                    conn.send_data(stream_id, ws_frame(line.decode()))
                    flush()
                except Exception as e:  # the stream may be gone already
                    say(f"send_failed {type(e).__name__}")
        if tls not in ready:
            continue
        try:
            data = tls.recv(65536)
        except ssl.SSLWantReadError:
            continue
        except (ConnectionError, ssl.SSLError):
            data = b""
        if not data:
            say("closed")
            return 0
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                changed = ev.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                if stream_id is None:
                    value = changed.new_value if changed else 0
                    say(f"settings enable_connect_protocol={value}")
                    stream_id = open_stream()
            elif isinstance(ev, h2.events.ResponseReceived):
                # Headers first, the status line last: a reader that waits
                # for the status has every header by then.
                for k, v in ev.headers:
                    k = k.decode() if isinstance(k, bytes) else k
                    v = v.decode() if isinstance(v, bytes) else v
                    if k == ":status":
                        status = int(v)
                    else:
                        say(f"header {k}: {v}")
                say(f"status {status}")
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if status == 200:
                    ws_buf += ev.data
                    for opcode, payload in ws_parse(ws_buf):
                        if opcode == 1:
                            say(f"message {payload.decode(errors='replace')}")
                        elif opcode == 8:
                            say("ws_close")
                else:
                    say(f"body {ev.data.decode(errors='replace').strip()}")
            elif isinstance(ev, h2.events.StreamEnded):
                say("end")
            elif isinstance(ev, h2.events.StreamReset):
                say(f"reset {int(ev.error_code)}")
            elif isinstance(ev, h2.events.ConnectionTerminated):
                say("goaway")
                flush()
                return 0
        flush()
    say("timeout")
    return 0


if __name__ == "__main__":
    sys.exit(main())
