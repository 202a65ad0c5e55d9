#!/usr/bin/env python3
"""Both ends of a gRPC call on grpcio, independent of hyper/h2, for ward's tests.

No protobuf and no generated code: methods take and return raw bytes.

    grpc_peer.py server
        Serves the service `ward.test.Echo` on an insecure (h2c prior
        knowledge) port on 127.0.0.1. Prints `port N` once listening, then one
        JSON line per call it receives: {"method", "identity", "assertion",
        "decision_id"} (the ward headers it saw). Methods:
          Unary   answers b"echo:" + request, with trailing metadata
                  `x-upstream-trailer: yes`.
          Stream  request b"N": N messages `msg-0`.. 200 ms apart; request
                  b"fail": two messages, then DATA_LOSS with a message (status
                  in real trailers, after data).
          Fail    aborts at once with RESOURCE_EXHAUSTED and a message that
                  needs percent-encoding (a trailers-only answer).
          Slow    answers after 3 s (longer than the gateway waits).
          Admin   answers b"admin" (a policy should never let a call through).

    grpc_peer.py client --target HOST:PORT --authority NAME --ca PEM
                        [--cert PEM --key PEM] --method /svc/Method
                        [--stream] [--data TEXT] [--timeout S]
        One call over TLS (mTLS with --cert/--key) with `:authority` NAME (also
        the name the server certificate is checked against). Prints one JSON
        object: {"code", "details", "messages", "times", "initial_metadata",
        "trailing_metadata"}; `times` are seconds since the call started, per
        message. Exits 0 whenever the call ended with a status, OK or not.
"""

import argparse
import json
import sys
import time
from concurrent import futures

import grpc

SERVICE = "ward.test.Echo"


def log_call(name, context):
    md = dict(context.invocation_metadata())
    print(
        json.dumps(
            {
                "method": name,
                "identity": md.get("x-ward-identity"),
                "assertion": bool(md.get("x-ward-assertion")),
                "decision_id": md.get("x-ward-decision-id"),
            }
        ),
        flush=True,
    )


def unary(request, context):
    log_call("Unary", context)
    context.set_trailing_metadata((("x-upstream-trailer", "yes"),))
    return b"echo:" + request


def stream(request, context):
    log_call("Stream", context)
    if request == b"fail":
        yield b"msg-0"
        yield b"msg-1"
        context.abort(grpc.StatusCode.DATA_LOSS, "lost the rest after 2 messages")
        return
    for i in range(int(request or b"3")):
        if i:
            time.sleep(0.2)
        yield f"msg-{i}".encode()


def fail(request, context):
    log_call("Fail", context)
    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota 100% used \u2014 caf\u00e9")


def slow(request, context):
    log_call("Slow", context)
    time.sleep(3)
    return b"late"


def admin(request, context):
    log_call("Admin", context)
    return b"admin"


def serve(_args) -> int:
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Admin": grpc.unary_unary_rpc_method_handler(admin),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"port {port}", flush=True)
    server.wait_for_termination()
    return 0


def metadata(md):
    return {k: v if isinstance(v, str) else v.decode("latin-1") for k, v in (md or ())}


def client(args) -> int:
    root = open(args.ca, "rb").read()
    key = open(args.key, "rb").read() if args.key else None
    chain = open(args.cert, "rb").read() if args.cert else None
    creds = grpc.ssl_channel_credentials(root, key, chain)
    options = [
        ("grpc.ssl_target_name_override", args.authority),
        ("grpc.default_authority", args.authority),
    ]
    out = {"messages": [], "times": []}
    started = time.monotonic()
    with grpc.secure_channel(args.target, creds, options=options) as channel:
        data = args.data.encode()
        try:
            if args.stream:
                call = channel.unary_stream(args.method)(data, timeout=args.timeout)
                for m in call:
                    out["times"].append(round(time.monotonic() - started, 3))
                    out["messages"].append(m.decode(errors="replace"))
            else:
                reply, call = channel.unary_unary(args.method).with_call(data, timeout=args.timeout)
                out["times"].append(round(time.monotonic() - started, 3))
                out["messages"].append(reply.decode(errors="replace"))
        except grpc.RpcError as e:
            call = e
        out["code"] = call.code().name
        out["details"] = call.details()
        out["initial_metadata"] = metadata(call.initial_metadata())
        out["trailing_metadata"] = metadata(call.trailing_metadata())
    print(json.dumps(out), flush=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("server")
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--authority", required=True)
    c.add_argument("--ca", required=True)
    c.add_argument("--cert")
    c.add_argument("--key")
    c.add_argument("--method", required=True)
    c.add_argument("--stream", action="store_true")
    c.add_argument("--data", default="")
    c.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args()
    return serve(args) if args.cmd == "server" else client(args)


if __name__ == "__main__":
    sys.exit(main())
