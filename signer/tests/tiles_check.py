#!/usr/bin/env python3
"""Check a transparency log served as C2SP tlog-tiles (https://c2sp.org/tlog-tiles).

Written from the specifications (tlog-tiles, tlog-checkpoint, signed-note, RFC 6962 section
2.1), not from kagi's code, with the Python standard library only. It:

  1. fetches <prefix>/checkpoint and parses the checkpoint (origin, size, root hash); with
     --vkey, checks that a signature line carries that key's name and key ID;
  2. recomputes the root of that size from the highest tiles that cover it: the tree is split
     into its perfect subtrees (one per set bit of the size, largest first), each of height
     8*L + r is the Merkle tree hash of 2**r consecutive hashes of a level-L tile, and the
     subtree hashes are folded right to left;
  3. recomputes it again from level 0 alone (every leaf hash, RFC 6962 MTH recursion);
  4. checks that each hash of every level-L (L >= 1) tile fetched is the hash of the full
     level L-1 tile it stands for, and that tiles have the widths the size implies;
  5. with --token, fetches the entry bundles and checks that every entry hashes to its leaf in
     the level-0 tiles (RFC 6962 leaf hash: SHA-256(0x00 || entry));
  6. checks that a tile beyond the tree is not served, and that full tiles are cacheable as
     immutable.

Usage: tiles_check.py PREFIX [--ca FILE] [--vkey VKEY] [--token TOKEN]
PREFIX is the log's URL prefix, e.g. https://127.0.0.1:8443/log. Exits 1 with a message on
the first mismatch.
"""

import argparse
import base64
import hashlib
import ssl
import sys
import urllib.error
import urllib.request

TILE_WIDTH = 256
HASH_SIZE = 32


def fail(msg):
    print(f"tiles_check: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


class Log:
    def __init__(self, prefix, ca, token):
        self.prefix = prefix.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=ca) if ca else None
        self.token = token
        self.fetched = {}

    def get(self, path, token=None, expect=200):
        req = urllib.request.Request(self.prefix + "/" + path)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, context=self.ctx) as resp:
                status, headers, body = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            status, headers, body = e.code, e.headers, e.read()
        if expect is not None and status != expect:
            fail(f"GET {path}: status {status}, expected {expect}: {body[:300]!r}")
        return status, headers, body

    def tile(self, level, index, width):
        """The hashes of tile (level, index), full (width 256) or partial."""
        key = (level, index, width)
        if key in self.fetched:
            return self.fetched[key]
        path = f"tile/{level}/{encode_index(index)}"
        if width < TILE_WIDTH:
            path += f".p/{width}"
        _, headers, body = self.get(path)
        if headers.get("Content-Type") != "application/octet-stream":
            fail(f"{path}: Content-Type {headers.get('Content-Type')!r}, expected application/octet-stream")
        if len(body) != width * HASH_SIZE:
            fail(f"{path}: {len(body)} bytes, expected {width} hashes ({width * HASH_SIZE} bytes)")
        if width == TILE_WIDTH and "immutable" not in headers.get("Cache-Control", ""):
            fail(f"{path}: a full tile should be cacheable as immutable, Cache-Control is {headers.get('Cache-Control')!r}")
        hashes = [body[i:i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)]
        self.fetched[key] = hashes
        return hashes


def encode_index(n):
    """The spec's path encoding: 3-digit groups, all but the last prefixed with 'x'."""
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def leaf_hash(entry):
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(hashes):
    """RFC 6962 2.1 Merkle Tree Hash over already-hashed leaves."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def tile_width_at(size, level, index):
    """Width of tile (level, index) in a tree of `size` entries: 256 if full, else partial."""
    count = size >> (8 * level)  # hashes at this tile level
    if (index + 1) * TILE_WIDTH <= count:
        return TILE_WIDTH
    width = count - index * TILE_WIDTH
    if width <= 0:
        fail(f"internal: tile {level}/{index} does not exist at size {size}")
    return width


def parse_checkpoint(note, vkey):
    if "\n\n" not in note:
        fail("the checkpoint is not a signed note (no blank line before the signatures)")
    text, sigs = note.rsplit("\n\n", 1)
    lines = text.split("\n")
    if len(lines) < 3:
        fail(f"the checkpoint body has {len(lines)} lines, expected origin, size, root")
    origin, size_s, root_b64 = lines[0], lines[1], lines[2]
    if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
        fail(f"the checkpoint size {size_s!r} is not a decimal without leading zeros")
    root = base64.b64decode(root_b64, validate=True)
    if len(root) != HASH_SIZE:
        fail("the checkpoint root is not 32 bytes")
    sig_lines = [l for l in sigs.split("\n") if l]
    if not sig_lines or not all(l.startswith("\u2014 ") for l in sig_lines):
        fail("the checkpoint's signature lines do not start with an em dash")
    if vkey:
        name, key_id_hex, key_b64 = vkey.split("+", 2)
        key = base64.b64decode(key_b64)
        want_id = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
        if want_id.hex() != key_id_hex:
            fail("the --vkey key ID does not match its name and key")
        if not any(
            l[2:].split(" ", 1)[0] == name and base64.b64decode(l[2:].split(" ", 1)[1])[:4] == want_id
            for l in sig_lines
        ):
            fail(f"no signature line by {name} with key ID {key_id_hex}")
    return origin, int(size_s), root


def root_from_top_tiles(log, size):
    """The root from the highest tiles: one perfect subtree per set bit of `size`."""
    subtrees = []
    start = 0
    for height in range(63, -1, -1):
        if size & (1 << height):
            level, r = divmod(height, 8)
            first = start >> (8 * level)  # index of its first hash at tile level `level`
            index, offset = divmod(first, TILE_WIDTH)
            hashes = log.tile(level, index, tile_width_at(size, level, index))
            part = hashes[offset:offset + (1 << r)]
            if len(part) != 1 << r:
                fail(f"tile {level}/{index} is too short for the subtree at {start}")
            subtrees.append(mth(part))
            start += 1 << height
    if not subtrees:
        return hashlib.sha256(b"").digest()
    root = subtrees[-1]
    for h in reversed(subtrees[:-1]):
        root = node_hash(h, root)
    return root


def leaves(log, size):
    out = []
    for index in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        out.extend(log.tile(0, index, tile_width_at(size, 0, index)))
    return out


def check_upper_tiles(log, size):
    """Every hash of a fetched level-L tile is the MTH of the full level L-1 tile below it."""
    checked = 0
    for (level, index, width), hashes in list(log.fetched.items()):
        if level == 0:
            continue
        for i, h in enumerate(hashes):
            below = log.tile(level - 1, index * TILE_WIDTH + i, TILE_WIDTH)
            if mth(below) != h:
                fail(f"hash {i} of tile {level}/{index} is not the hash of tile {level - 1}/{index * TILE_WIDTH + i}")
            checked += 1
    return checked


def check_bundles(log, size, token):
    leaf_hashes = leaves(log, size)
    n = 0
    for index in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = tile_width_at(size, 0, index)
        path = f"tile/entries/{encode_index(index)}" + (f".p/{width}" if width < TILE_WIDTH else "")
        _, _, body = log.get(path, token=token)
        pos, k = 0, 0
        while pos < len(body):
            if pos + 2 > len(body):
                fail(f"{path}: truncated length prefix at byte {pos}")
            length = int.from_bytes(body[pos:pos + 2], "big")
            entry = body[pos + 2:pos + 2 + length]
            if len(entry) != length:
                fail(f"{path}: entry {k} is truncated")
            if leaf_hash(entry) != leaf_hashes[index * TILE_WIDTH + k]:
                fail(f"{path}: entry {k} does not hash to leaf {index * TILE_WIDTH + k} of the level-0 tile")
            pos += 2 + length
            k += 1
        if k != width:
            fail(f"{path}: {k} entries, expected {width}")
        n += k
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("prefix")
    ap.add_argument("--ca")
    ap.add_argument("--vkey")
    ap.add_argument("--token")
    args = ap.parse_args()
    log = Log(args.prefix, args.ca, args.token)

    _, headers, body = log.get("checkpoint")
    if not headers.get("Content-Type", "").startswith("text/plain"):
        fail(f"the checkpoint's Content-Type is {headers.get('Content-Type')!r}, expected text/plain")
    origin, size, root = parse_checkpoint(body.decode("utf-8"), args.vkey)
    print(f"checkpoint: origin {origin}, size {size}, root {base64.b64encode(root).decode()}")
    if size == 0:
        fail("the log is empty: nothing to check")

    top = root_from_top_tiles(log, size)
    if top != root:
        fail("the root recomputed from the top tiles is not the checkpoint's root")
    print(f"ok: root of {size} entries recomputed from the top tiles ({len(log.fetched)} tiles)")
    if mth(leaves(log, size)) != root:
        fail("the root recomputed from the level-0 tiles is not the checkpoint's root")
    print(f"ok: root recomputed from {size} leaf hashes in the level-0 tiles")
    checked = check_upper_tiles(log, size)
    print(f"ok: {checked} hashes of upper-level tiles match the full tiles below them")

    # A tile beyond the tree is not served.
    beyond = (size >> 8) // TILE_WIDTH + 1
    status, _, _ = log.get(f"tile/0/{encode_index(beyond * TILE_WIDTH)}", expect=None)
    if status != 404:
        fail(f"a level-0 tile beyond the tree was answered {status}, expected 404")
    count = size & (TILE_WIDTH - 1)
    if count and count < TILE_WIDTH - 1:
        status, _, _ = log.get(f"tile/0/{encode_index(size // TILE_WIDTH)}.p/{count + 1}", expect=None)
        if status != 404:
            fail(f"a partial tile wider than the tree was answered {status}, expected 404")
    print("ok: tiles beyond the checkpoint's size are not served")

    if args.token:
        n = check_bundles(log, size, args.token)
        print(f"ok: {n} entries in the entry bundles hash to their leaves")


if __name__ == "__main__":
    main()
