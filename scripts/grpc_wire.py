"""The few protobuf and gRPC framing helpers tilgang's scripts need, written by
hand so they run on a bare python3 (no grpcio, no generated stubs): string
fields and varints for requests, a field-number decoder for responses, and
the 5-byte gRPC message prefix. Used by scale_probe.py, load.sh and
telemetry_load.sh."""

import struct


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def field(number, value):
    """A length-delimited (string) field."""
    data = value.encode()
    return varint(number << 3 | 2) + varint(len(data)) + data


def read_varint(buf, i):
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def decode(buf):
    """Field number -> list of values (ints for varints, str for length-delimited)."""
    out, i = {}, 0
    while i < len(buf):
        tag, i = read_varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = read_varint(buf, i)
        elif wire == 2:
            size, i = read_varint(buf, i)
            value, i = buf[i:i + size].decode(errors="replace"), i + size
        else:
            raise SystemExit(f"error: unexpected protobuf wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def frame(msg):
    """One uncompressed gRPC message: flag 0, 4-byte big-endian length, bytes."""
    return struct.pack(">BI", 0, len(msg)) + msg


def unframe(data):
    """The message in one uncompressed gRPC frame; None for no frame at all."""
    if len(data) < 5:
        return None
    flag, length = struct.unpack(">BI", data[:5])
    if flag != 0 or len(data) != 5 + length:
        raise SystemExit(f"not one uncompressed gRPC message: flag={flag} len={length} got={len(data)}")
    return data[5:]
