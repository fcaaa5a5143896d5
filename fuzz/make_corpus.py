#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets that take plain formats (fuzz/corpus/<target>/).

Standard library only. The JSON-config and checkpoint seeds come from the library itself:
scripts/fuzz.sh --regenerate-corpus runs this script and then the targets with MD_FUZZ_WRITE_SEED.
"""
import gzip
import json
import os
import pathlib
import struct
import zlib

ROOT = pathlib.Path(__file__).resolve().parent
CORPUS = ROOT / "corpus"
GOLDEN = ROOT.parent / "tests" / "golden"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# IDX: magic 00 00 <type> <ndim>, big-endian u32 sizes, big-endian data.
def idx(code, fmt, sizes, values):
    head = bytes([0, 0, code, len(sizes)]) + b"".join(struct.pack(">I", s) for s in sizes)
    return head + b"".join(struct.pack(">" + fmt, v) for v in values)


put("fuzz_idx", "u8_2x3x3", idx(0x08, "B", [2, 3, 3], range(18)))
put("fuzz_idx", "u8_labels_gz", gzip.compress(idx(0x08, "B", [5], [0, 1, 9, 3, 4]), mtime=0))
put("fuzz_idx", "i8_4", idx(0x09, "b", [4], [-128, -1, 0, 127]))
put("fuzz_idx", "i16_2x2", idx(0x0B, "h", [2, 2], [-300, 2, 3, 30000]))
put("fuzz_idx", "i32_3", idx(0x0C, "i", [3], [-1, 0, 1 << 30]))
put("fuzz_idx", "f32_4", idx(0x0D, "f", [4], [0.5, -1.25, 3.0e10, 0.0]))
put("fuzz_idx", "f64_1x2_gz", gzip.compress(idx(0x0E, "d", [1, 2], [1.0, -2.0]), mtime=0))
put("fuzz_idx", "two_members_gz", gzip.compress(idx(0x08, "B", [3], [1, 2, 3])[:6], mtime=0) +
    gzip.compress(idx(0x08, "B", [3], [1, 2, 3])[6:], mtime=0))


# .npy 1.0 / 2.0
def npy(descr, shape, payload, major=1):
    shape_text = "(" + "".join(f"{s}," if len(shape) == 1 else f"{s}, " for s in shape).rstrip(" ") + ")"
    if len(shape) > 1:
        shape_text = "(" + ", ".join(str(s) for s in shape) + ")"
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape_text)
    prefix = 10 if major == 1 else 12
    total = (prefix + len(header) + 1 + 63) // 64 * 64
    header = header + " " * (total - prefix - len(header) - 1) + "\n"
    length = struct.pack("<H", len(header)) if major == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([major, 0]) + length + header.encode() + payload


put("fuzz_npy", "f4_3x2", npy("<f4", [3, 2], struct.pack("<6f", 1, 2, 3, 4, 5, 6)))
put("fuzz_npy", "f8_2", npy("<f8", [2], struct.pack("<2d", 0.5, -0.5)))
put("fuzz_npy", "f4_v2", npy("<f4", [1, 1, 1], struct.pack("<f", 7), major=2))
put("fuzz_npy", "f4_0x3", npy("<f4", [0, 3], b""))
put("fuzz_npy", "f4_scalar", npy("<f4", [], struct.pack("<f", 1.5)))

# CSV: the first byte picks the delimiter (bits 0-1: , ; tab space) and the dtype (bit 2: float64).
put("fuzz_csv", "header_comma", b"\x00x,y,z\n0.1,0.2,0.3\n1,2,3\n")
put("fuzz_csv", "semicolon_crlf_f64", b"\x05a;b\r\n1e-3;-2.5\r\n\r\n4;5\r\n")
put("fuzz_csv", "tab", b"\x02 1\t2\n3\t4\n")
put("fuzz_csv", "space_one_column", b"\x03" + b"7\n8\n9\n")


# PNG: signature, IHDR, IDAT (zlib of filtered rows), IEND.
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png(width, height, bit_depth, color_type, rows, interlace=0):
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    raw = b"".join(rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


put("fuzz_png", "gray8_4x3_filters", png(4, 3, 8, 0, [bytes([f]) + bytes([10 * f + i for i in range(4)]) for f in range(3)]))
put("fuzz_png", "rgb8_2x2_paeth", png(2, 2, 8, 2, [bytes([4]) + bytes(range(6)), bytes([3]) + bytes(range(6, 12))]))
put("fuzz_png", "rgba8_1x2", png(1, 2, 8, 6, [b"\x00\xff\x00\x00\x80", b"\x01\x00\xff\x00\xff"]))
put("fuzz_png", "gray16_2x1", png(2, 1, 16, 0, [b"\x00\x12\x34\xab\xcd"]))
put("fuzz_png", "graya8_2x1", png(2, 1, 8, 4, [b"\x00\x10\xff\x20\x80"]))
put("fuzz_png", "gray1_8x1", png(8, 1, 1, 0, [b"\x00\xa5"]))


# safetensors: u64 header length, JSON header, data.
def safetensors(tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


put("fuzz_safetensors", "f32_i64_meta", safetensors(
    [("w", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)), ("step", "I64", [], struct.pack("<q", 7))],
    {"format": "pt"}))
put("fuzz_safetensors", "bf16_f16_f64", safetensors(
    [("a", "BF16", [3], b"\x80\x3f\x00\x40\x40\x40"), ("b", "F16", [1], b"\x00\x3c"),
     ("c", "F64", [1], struct.pack("<d", -1.0))]))
put("fuzz_safetensors", "ints_bool", safetensors(
    [("i32", "I32", [2], struct.pack("<2i", -1, 7)), ("i16", "I16", [1], struct.pack("<h", -3)),
     ("i8", "I8", [2], b"\xff\x01"), ("u8", "U8", [3], b"\x00\x80\xff"), ("b", "BOOL", [2], b"\x01\x00")]))
put("fuzz_safetensors", "empty_tensor", safetensors([("e", "F32", [0, 4], b"")]))
put("fuzz_safetensors", "nothing", safetensors([]))

# JSON configs from the golden folders (diffusers UNet and scheduler configs); the options structs'
# own to_json() seeds come from the fuzz_json_config target.
for cfg in sorted(GOLDEN.glob("*/config.json")) + sorted(GOLDEN.glob("*/*/config.json")):
    put("fuzz_json_config", "diffusers_unet_" + cfg.parent.name.replace("/", "_"), cfg.read_bytes())
for cfg in sorted(GOLDEN.glob("*/scheduler/scheduler_config.json")):
    put("fuzz_json_config", "diffusers_scheduler_" + cfg.parent.parent.name, cfg.read_bytes())
for st in sorted(GOLDEN.glob("sched_*.safetensors")):
    blob = st.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    meta = json.loads(blob[8:8 + n]).get("__metadata__", {})
    if "scheduler_config" in meta:
        put("fuzz_json_config", "diffusers_" + st.stem, meta["scheduler_config"])

print("make_corpus: wrote", sum(1 for _ in CORPUS.rglob("*") if _.is_file()), "files under", CORPUS)
