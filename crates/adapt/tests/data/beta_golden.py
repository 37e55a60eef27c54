#!/usr/bin/env python3
"""Independent reference of docs/ADAPT.md sections 1 and 2 (the v2 stream: ChaCha12): recomputes
beta_golden.txt from the written definitions (Python floats are IEEE binary64 with
correctly rounded + - * / and math.sqrt; no libm logarithm is used).

    python3 crates/adapt/tests/data/beta_golden.py | diff - crates/adapt/tests/data/beta_golden.txt
"""
import decimal
import hashlib
import hmac
import math
import struct

SHAPES = [(1, 1), (2, 5), (47, 12198), (500, 500), (1, 1000000), (1000000, 3), (1000000, 1000000)]
EXTERNAL = 0xFFFFFFFF


MASK = 0xFFFFFFFF


def rotl(x, n):
    return ((x << n) | (x >> (32 - n))) & MASK


def quarter(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & MASK; s[d] = rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & MASK; s[b] = rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & MASK; s[d] = rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & MASK; s[b] = rotl(s[b] ^ s[c], 7)


def chacha_block(key, counter, nonce, rounds=12):
    """RFC 8439 section 2.3: the block function, here with 12 rounds."""
    state = list(struct.unpack("<4I", b"expand 32-byte k")) + list(struct.unpack("<8I", key)) \
        + [counter] + list(struct.unpack("<3I", nonce))
    s = list(state)
    for _ in range(rounds // 2):
        quarter(s, 0, 4, 8, 12); quarter(s, 1, 5, 9, 13)
        quarter(s, 2, 6, 10, 14); quarter(s, 3, 7, 11, 15)
        quarter(s, 0, 5, 10, 15); quarter(s, 1, 6, 11, 12)
        quarter(s, 2, 7, 8, 13); quarter(s, 3, 4, 9, 14)
    return struct.pack("<16I", *[(a + b) & MASK for a, b in zip(s, state)])


class Stream:
    def __init__(self, key, state, inp, purpose, index):
        self.seed = hmac.new(key, b"calybris/adapt/prf/v2" + state + inp, hashlib.sha256).digest()
        self.nonce = struct.pack("<IQ", purpose, index)
        self.block, self.words = 0, []

    def word(self):
        if not self.words:
            out = chacha_block(self.seed, self.block, self.nonce)
            self.words = list(struct.unpack("<8Q", out))
            self.block += 1
        return self.words.pop(0)

    def unit(self):
        return float(self.word() >> 11) * 2.0 ** -53

    def unit_open(self):
        return float(2 * (self.word() >> 12) + 1) * 2.0 ** -53


def ln(x):
    lifted = 0
    if x < 2.2250738585072014e-308:
        x, lifted = x * 2.0 ** 54, 54
    bits = struct.unpack(">Q", struct.pack(">d", x))[0]
    e = ((bits >> 52) & 0x7FF) - 1023 - lifted
    m = struct.unpack(">d", struct.pack(">Q", (bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000))[0]
    if m > 1.4142135623730951:
        m *= 0.5
        e += 1
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    s = 0.0
    for k in range(11, -1, -1):
        s = s * f2 + 1.0 / float(2 * k + 1)
    return float(e) * 0.6931471805599453 + 2.0 * f * s


class Sampler:
    def __init__(self, stream):
        self.s, self.spare = stream, None

    def normal(self):
        if self.spare is not None:
            z, self.spare = self.spare, None
            return z
        for _ in range(64):
            u = 2.0 * self.s.unit() - 1.0
            v = 2.0 * self.s.unit() - 1.0
            q = u * u + v * v
            if q >= 1.0 or q == 0.0:
                continue
            f = math.sqrt(-2.0 * ln(q) / q)
            self.spare = v * f
            return u * f
        raise RuntimeError("polar exhausted")

    def gamma(self, a):
        d = float(a) - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        for _ in range(64):
            x = self.normal()
            t = 1.0 + c * x
            if t <= 0.0:
                continue
            v = t * t * t
            u = self.s.unit_open()
            x2 = x * x
            if u < 1.0 - 0.0331 * x2 * x2 or ln(u) < 0.5 * x2 + d * (1.0 - v + ln(v)):
                return d * v
        raise RuntimeError("gamma exhausted")

    def beta(self, a, b):
        x = self.gamma(a)
        y = self.gamma(b)
        return x / (x + y)


def rust_exp(x):
    """Rust's `{:e}` of a positive f64: the shortest round-trip digits (Python's repr)."""
    sign, digits, exponent = decimal.Decimal(repr(x)).normalize().as_tuple()
    assert sign == 0
    text = "".join(map(str, digits))
    body = text[0] + ("." + text[1:] if len(text) > 1 else "")
    return "%se%d" % (body, exponent + len(text) - 1)


def main():
    print("# First keyed Beta draws (docs/ADAPT.md). Regenerate only with")
    print("# CALYBRIS_REGENERATE_GOLDEN=1 cargo test -p calybris-adapt --test beta_ks")
    print("# alpha beta key_byte draw bits_hex value")
    for a, b in SHAPES:
        for kb in (1, 2, 0xFF):
            s = Sampler(Stream(bytes([kb]) * 32, bytes([0x5A]) * 32, bytes([kb]) * 32, EXTERNAL, a << 32 | b))
            for j in range(8):
                x = s.beta(a, b)
                bits = struct.unpack(">Q", struct.pack(">d", x))[0]
                print("%d %d %d %d %016x %s" % (a, b, kb, j, bits, rust_exp(x)))


if __name__ == "__main__":
    main()
