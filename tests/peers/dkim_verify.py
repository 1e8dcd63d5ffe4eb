#!/usr/bin/python3
"""Verify a message's DKIM signature(s) offline with python3-dkim.

    dkim_verify.py --message FILE --key-dir DIR [--domain D]

The public keys come from the opendkim-genkey "<selector>.txt" files found
(recursively) under DIR, served to dkimpy through `dnsfunc`, so no DNS is
used.  Prints one JSON object:

    {"signed": bool, "d": "brand.example" | null, "valid": bool,
     "signatures": [{"d": ..., "s": ..., "valid": bool, "error": ...}, ...]}

"d" is the domain of the first valid signature (or of the first signature
when none is valid).  With --domain, only signatures with that d= count.
Exit status 0 iff a (matching) signature verifies, 1 otherwise, 2 on usage
errors.  Run with /usr/bin/python3 (Debian's python3-dkim).
"""

import argparse
import json
import os
import re
import sys

import dkim
from dkim.util import parse_tag_value


def load_keys(key_dir):
    """Map 'selector._domainkey.domain.' (lower case) -> TXT record bytes."""
    records = {}
    for root, _dirs, files in os.walk(key_dir):
        for name in files:
            if not name.endswith(".txt"):
                continue
            path = os.path.join(root, name)
            with open(path, encoding="ascii", errors="replace") as fh:
                text = fh.read()
            # opendkim-genkey writes:  SEL._domainkey IN TXT ( "..." "..." )  ; ----- DKIM key SEL for DOMAIN
            fields = text.split()
            if len(fields) < 3 or fields[1].upper() != "IN" or fields[2].upper() != "TXT":
                continue
            owner = fields[0]
            record, _, comment = text.partition(")")
            value = "".join(re.findall(r'"([^"]*)"', record))
            cm = re.search(r"DKIM key \S+ for (\S+)", comment)
            domain = cm.group(1) if cm else os.path.basename(root)
            if not owner.endswith("."):
                owner = f"{owner}.{domain}."
            records[owner.lower()] = value.encode("ascii")
    return records


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--message", required=True)
    ap.add_argument("--key-dir", required=True)
    ap.add_argument("--domain", help="only count signatures with this d=")
    args = ap.parse_args(argv)

    with open(args.message, "rb") as fh:
        msg = fh.read()
    records = load_keys(args.key_dir)

    def dnsfunc(name, timeout=5):  # pylint: disable=unused-argument
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        name = name.lower()
        if not name.endswith("."):
            name += "."
        return records.get(name)

    try:
        headers, _body = dkim.rfc822_parse(msg)
    except Exception as e:  # malformed message
        print(json.dumps({"signed": False, "d": None, "valid": False, "error": str(e)}))
        return 1
    sigs = []
    idx = 0
    for hname, hvalue in headers:
        if hname.lower() != b"dkim-signature":
            continue
        info = {"d": None, "s": None, "valid": False, "error": None}
        try:
            tags = parse_tag_value(hvalue)
            info["d"] = tags.get(b"d", b"").decode("ascii", "replace").lower() or None
            info["s"] = tags.get(b"s", b"").decode("ascii", "replace") or None
        except Exception as e:
            info["error"] = f"unparsable signature: {e}"
        if info["error"] is None:
            try:
                d = dkim.DKIM(msg)
                info["valid"] = bool(d.verify(idx=idx, dnsfunc=dnsfunc))
            except Exception as e:
                info["error"] = str(e)
        sigs.append(info)
        idx += 1

    wanted = [s for s in sigs if args.domain is None or s["d"] == args.domain.lower()]
    valid = [s for s in wanted if s["valid"]]
    chosen = valid[0] if valid else (wanted[0] if wanted else (sigs[0] if sigs else None))
    out = {"signed": bool(sigs), "d": chosen["d"] if chosen else None,
           "valid": bool(valid), "signatures": sigs}
    print(json.dumps(out))
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())
