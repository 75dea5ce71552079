"""JSON codec benchmarks: ``python -m bench codec``.

afterward encodes every event as JSON with the standard library (see
``afterward/events/_envelope.py``): ``json.JSONEncoder(ensure_ascii=False,
allow_nan=False, separators=(",", ":"))``, then UTF-8 bytes; it decodes UTF-8 bytes
with ``json.JSONDecoder``. This measures that (the peer every ratio is against)
against orjson and msgspec.json on realistic event data of about 200 B, 2 KB and
100 KB (nested dicts and lists of str/int/float/bool/None, some non-ASCII text),
encode to bytes and decode from bytes, median of ``BENCH_CODEC_ROUNDS`` (3)
interleaved rounds of enough calls for about ``BENCH_CODEC_SECONDS`` (0.25 s) each.

A second table shows what each codec does with the inputs where they differ
(NaN, non-str keys, lone surrogates, big ints, tuples, dataclasses, datetimes...):
the output, or the exception it raises.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import os
import random
import statistics
import timeit
from collections.abc import Callable
from typing import Any

from bench._table import table

__all__ = ["run"]

ROUNDS = int(os.environ.get("BENCH_CODEC_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_CODEC_SECONDS", "0.25"))
SIZES = (200, 2_000, 100_000)

Encode = Callable[[Any], bytes]
Decode = Callable[[bytes], Any]


def _codecs() -> dict[str, tuple[Encode, Decode]]:
    """The codecs installed, each as (encode to bytes, decode from bytes)."""
    encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    decoder = json.JSONDecoder()
    codecs: dict[str, tuple[Encode, Decode]] = {
        # Exactly what the envelope does (str(payload, "utf-8") skips json.loads' sniffing).
        "stdlib json": (
            lambda obj: encoder.encode(obj).encode(),
            lambda data: decoder.decode(str(data, "utf-8")),
        ),
    }
    try:
        import orjson
    except ImportError:
        pass
    else:
        codecs["orjson"] = (orjson.dumps, orjson.loads)
    try:
        import msgspec
    except ImportError:
        pass
    else:
        codecs["msgspec.json"] = (msgspec.json.Encoder().encode, msgspec.json.Decoder().decode)
    return codecs


_WORDS = [
    "order", "paid", "shipped", "Café crème", "Müller", "naïve", "Ærøskøbing", "日本語",
    "Ελληνικά", "Łódź", "straße", "façade", "résumé", "😀 thanks!", "blue", "large",
]  # fmt: skip


def _item(rng: random.Random, n: int) -> dict[str, Any]:
    return {
        "sku": f"SKU-{rng.randrange(10**6):06d}",
        "title": " ".join(rng.choice(_WORDS) for _ in range(3)),
        "qty": rng.randrange(1, 10),
        "unit_price": round(rng.uniform(0.5, 500), 2),
        "discount": rng.choice([None, 0.1, 0.25]),
        "gift": rng.random() < 0.2,
        "tags": [rng.choice(_WORDS) for _ in range(rng.randrange(0, 4))],
        "attributes": {"colour": rng.choice(_WORDS), "weight_kg": rng.random() * 20, "n": n},
    }


def payload(target: int, seed: int = 7) -> dict[str, Any]:
    """Event data of at least ``target`` bytes encoded (a customer, an order's lines)."""
    rng = random.Random(seed)
    data: dict[str, Any] = {
        "order_id": "ord_8f14e45fceea",
        "customer": {"id": 48213, "name": "José Müller", "vip": False, "note": None},
        "total": 129.95,
        "currency": "EUR",
    }
    size = lambda: len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())  # noqa: E731
    if size() >= target:
        return data
    data["shipping"] = {"city": "Łódź", "zip": "90-001", "express": True, "eta_days": 2}
    data["lines"] = []
    while size() < target:
        data["lines"].append(_item(rng, len(data["lines"])))
    return data


def _calls(encode: Encode, obj: Any) -> int:
    """How many calls take about SECONDS (from the stdlib's speed, so every codec gets
    the same count and a faster one simply takes less time)."""
    timer = timeit.Timer("f(x)", globals={"f": encode, "x": obj})
    number, elapsed = timer.autorange()
    return max(1, int(number * SECONDS / elapsed))


def _per_call(fn: Callable[[Any], Any], arg: Any, number: int) -> float:
    return timeit.Timer("f(x)", globals={"f": fn, "x": arg}).timeit(number) / number


def _speed_rows() -> list[list[object]]:
    codecs = _codecs()
    stdlib_encode, _ = codecs["stdlib json"]
    cases = []
    for target in SIZES:
        obj = payload(target)
        raw = stdlib_encode(obj)
        for name, (encode, decode) in codecs.items():
            assert decode(encode(obj)) == obj, f"{name} does not round-trip the payload"
        cases.append((obj, raw, _calls(stdlib_encode, obj), _calls(codecs["stdlib json"][1], raw)))
    # samples[(size index, op, codec)] = seconds per call, one per round, rounds interleaved
    samples: dict[tuple[int, str, str], list[float]] = {}
    for _ in range(ROUNDS):
        for i, (obj, raw, enc_n, dec_n) in enumerate(cases):
            for name, (encode, decode) in codecs.items():
                samples.setdefault((i, "encode", name), []).append(_per_call(encode, obj, enc_n))
                samples.setdefault((i, "decode", name), []).append(_per_call(decode, raw, dec_n))
    rows: list[list[object]] = []
    for i, (obj, raw, _, _) in enumerate(cases):
        for op in ("encode", "decode"):
            base = statistics.median(samples[(i, op, "stdlib json")])
            for name, (encode, _) in codecs.items():
                sec = statistics.median(samples[(i, op, name)])
                same = "" if name == "stdlib json" else ("yes" if encode(obj) == raw else "no")
                rows.append(
                    [
                        f"{len(raw):,} B",
                        op,
                        name,
                        sec * 1e6,
                        f"{1 / sec:,.0f}",
                        f"{len(raw) / sec / 1e6:,.0f}",
                        f"{base / sec:.2f}x",
                        same if op == "encode" else "",
                    ]
                )
    return rows


@dataclasses.dataclass
class _Point:
    x: int
    y: str


class _Colour(enum.Enum):
    RED = "red"


class _Str(str):
    """A str subclass, like Django's SafeString or markupsafe's Markup."""


_ENCODE_CASES: list[tuple[str, Any]] = [
    ("float('nan')", float("nan")),
    ("float('inf')", float("inf")),
    ("{1: 'a'} (int key)", {1: "a"}),
    ("{None: 1} (None key)", {None: 1}),
    ("'\\ud800' (lone surrogate)", "\ud800"),
    ("2**64", 2**64),
    ("-(2**63) - 1", -(2**63) - 1),
    ("(1, 2) (tuple)", (1, 2)),
    ("a dataclass", _Point(1, "a")),
    ("aware datetime", datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)),
    ("an Enum member", _Colour.RED),
    ("a str subclass", _Str("a")),
    ("1e-07 (float repr)", 1e-07),
    ("list nested 255 deep", None),  # built below: the depth orjson refuses
]

_DECODE_CASES: list[tuple[str, bytes]] = [
    ("[NaN]", b"[NaN]"),
    ('["\\ud800"] (escaped lone surrogate)', b'["\\ud800"]'),
    ("[18446744073709551616] (2**64)", b"[18446744073709551616]"),
    ("[1e400]", b"[1e400]"),
    ("invalid UTF-8", b'["\xff"]'),
    ("UTF-8 BOM first", b"\xef\xbb\xbf[1]"),
]


def _nested(depth: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(depth - 1):
        child: list[Any] = []
        node.append(child)
        node = child
    return root


def _error(exc: BaseException) -> str:
    cls = type(exc)
    builtin = next(c for c in cls.__mro__ if c.__module__ == "builtins")
    name = cls.__name__ if cls is builtin else f"{cls.__module__.split('.')[0]}.{cls.__name__}"
    return f"raises {name}" + ("" if cls is builtin else f" ({builtin.__name__})")


def _outcome(fn: Callable[[Any], Any], arg: Any) -> str:
    try:
        result = fn(arg)
    except (Exception, RecursionError) as exc:
        return _error(exc)
    text = result.decode() if isinstance(result, bytes) else repr(result)
    text = text.replace("|", "\\|")
    return f"`{text}`" if len(text) <= 40 else f"`{text[:37]}...`"


def _behaviour_rows() -> tuple[list[str], list[list[object]]]:
    codecs = _codecs()
    rows: list[list[object]] = []
    for label, obj in _ENCODE_CASES:
        arg = _nested(255) if obj is None else obj
        outcomes = [_outcome(enc, arg) for enc, _ in codecs.values()]
        if label.startswith("list nested"):
            outcomes = ["ok" if o.startswith("`") else o for o in outcomes]
        rows.append(["encode", label, *outcomes])
    for label, raw in _DECODE_CASES:
        rows.append(["decode", label, *(_outcome(dec, raw) for _, dec in codecs.values())])
    return ["op", "input", *codecs], rows


def run() -> str:
    """Run the codec benchmarks; return their Markdown tables."""
    header, behaviour = _behaviour_rows()
    return "\n".join(
        [
            table(
                f"JSON codecs on event data (median of {ROUNDS} interleaved rounds)",
                [
                    "size",
                    "op",
                    "codec",
                    "µs per call",
                    "calls/s",
                    "MB/s",
                    "speed vs stdlib",
                    "same bytes as stdlib",
                ],
                _speed_rows(),
            ),
            table(
                "JSON codecs: where they behave differently (output, or the exception raised)",
                header,
                behaviour,
            ),
        ]
    )
