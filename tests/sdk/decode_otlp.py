"""Decodes OTLP/HTTP trace exports with the official protobuf definitions
(the `opentelemetry-proto` package) and prints them as JSON for the tests:
one object per export, ids in hex, attribute values as plain JSON.

Usage: decode_otlp.py FILE...   (each file one request body)
"""
import json
import sys

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def attributes(kvs):
    out = {}
    for kv in kvs:
        if kv.key in out:
            raise SystemExit(f"attribute {kv.key} twice")
        out[kv.key] = value(kv.value)
    return out


def no_unknown_fields(msg, where):
    from google.protobuf.unknown_fields import UnknownFieldSet
    if len(UnknownFieldSet(msg)) > 0:
        raise SystemExit(f"{where}: unknown fields in {msg.DESCRIPTOR.full_name}")
    for field, v in msg.ListFields():
        if field.message_type is None:
            continue
        # `is_repeated` from protobuf 6; `label` before it.
        repeated = getattr(field, "is_repeated", None)
        if repeated is None:
            repeated = field.label == field.LABEL_REPEATED
        if repeated:
            for x in v:
                no_unknown_fields(x, where)
        else:
            no_unknown_fields(v, where)


def main():
    exports = []
    for path in sys.argv[1:]:
        req = ExportTraceServiceRequest()
        with open(path, "rb") as f:
            data = f.read()
        try:
            req.ParseFromString(data)
        except DecodeError as e:
            raise SystemExit(f"{path}: not an ExportTraceServiceRequest: {e}")
        # An unknown field means a wrong field number somewhere.
        no_unknown_fields(req, path)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                spans = []
                for s in ss.spans:
                    spans.append({
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": Span.SpanKind.Name(s.kind),
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "attributes": attributes(s.attributes),
                        "status": Status.StatusCode.Name(s.status.code),
                        "status_message": s.status.message,
                        "flags": s.flags,
                    })
                exports.append({
                    "resource": attributes(rs.resource.attributes),
                    "scope": ss.scope.name,
                    "scope_version": ss.scope.version,
                    "spans": spans,
                })
    json.dump(exports, sys.stdout)


main()
