#!/usr/bin/python3
"""Differential test: relaygate's header reader against Python's email package.

Owns the comparison only; it never changes the corpus it reads. Runs with
/usr/bin/python3 (Debian's Python). For every message relaygate ACCEPTS,
Python's email package with policy=email.policy.strict must see exactly one
From field with the same number of mailboxes and the same domains. Messages
relaygate rejects are only counted (being stricter than Python is the point).

usage: differential.py VERDICT_TOOL CORPUS_DIR [--keep DIR] [--count N]

The corpus is CORPUS_DIR/*.eml (hand-written; an "X-Expect: accept" or
"X-Expect: reject <reason>" line states relaygate's expected verdict) plus N
generated messages (deterministic seed). Files named *.utf8.eml are read as
if SMTPUTF8 was negotiated.
"""
import argparse
import codecs
import email
import email.policy
import os
import random
import re
import subprocess
import sys
import tempfile

# Intentional disagreements: tag -> why relaygate reads the message differently.
# A generated message carries its tags in its file name; hand-written files are
# listed in HANDWRITTEN_TAGS.
INTENTIONAL = {
    "obs_colon_wsp": (
        "'From :' / 'From<TAB>:' names the From field (RFC 5322 4.5.3 obs-optional); "
        "Python takes a line starting 'From ' as a Unix mbox separator and a name "
        "followed by TAB as no header at all, so it sees no From field."
    ),
}
HANDWRITTEN_TAGS = {
    "obs-colon-space.eml": {"obs_colon_wsp"},
    "obs-colon-tab.eml": {"obs_colon_wsp"},
}

# --- generator ---------------------------------------------------------------

DISPLAY = [
    "", "John Doe", '"Doe, John"', "John Q. Public", '"Joe Q. Public"',
    "=?utf-8?q?J=C3=B6rg?=", '"Giant; \\"Big\\" Box"', "Who?", "(c) Name", "Mary(c)Smith",
]
DISPLAY_BAD = ['"admin@brand.example"', "=?utf-8?q?admin=40brand.example?="]
LOCAL = ["jdoe", "john.q.public", '"john doe"', "a+tag", "o'brien", "x!#$%&'*+-/=?^_`{|}~",
         "admin", "First.Last"]
LOCAL_BAD = ['"admin@brand.example"', "=?utf-8?q?admin?=", "a..b", ".a", '"a".b']
DOMAIN = ["example.com", "Mail.Example.ORG", "xn--bcher-kva.example", "sub-1.a.example",
          "brand.example"]
DOMAIN_BAD = ["[192.0.2.1]", "-bad.example", "bad_.example", "a.example."]
DOMAIN_UTF8 = ["b\u00fccher.example", "\u4f8b\u3048.example"]
DOMAIN_UTF8_BAD = ["brand\u200b.example", "brand.example\u00a0", "B\u00dcCHER.example"]


def pick(rng, good, bad, p_bad=0.1):
    return rng.choice(bad) if bad and rng.random() < p_bad else rng.choice(good)


FROM_NAME = ["From", "From", "From", "FROM", "from", "From ", "From\t"]
TRICKS = [None] * 30 + [
    "dup_from", "second_mailbox", "route", "leading_space", "bare_lf", "bare_cr", "nul",
    "ws_line", "fold_name", "trailing", "no_from", "dup_subject", "group", "empty_group",
    "comment_addr", "missing_crlf", "sender", "resent",
]
EXTRA = [
    "To: Mary Smith <mary@example.net>", "Subject: Saying Hello",
    "Date: Fri, 21 Nov 1997 09:55:06 -0600", "Message-ID: <1234@local.machine.example>",
    "Received: from x.y.test\r\n   by example.net; 21 Nov 1997 10:05:43 -0600",
    "Reply-To: <reply@example.net>", "X-Mailer: gen\r\n\tfolded",
]


def comment(rng):
    return rng.choice(["", "", " (c)", "(nested (comment))", " (a \\) b)"])


def fold(rng, s):
    """Folds at one random space (RFC 5322 2.2.3)."""
    spaces = [i for i, c in enumerate(s) if c == " "]
    if not spaces or rng.random() < 0.6:
        return s
    i = rng.choice(spaces)
    return s[:i] + "\r\n" + s[i:]


def mailbox(rng, utf8):
    local = pick(rng, LOCAL, LOCAL_BAD)
    domain = pick(rng, DOMAIN + (DOMAIN_UTF8 if utf8 else []), DOMAIN_BAD + (DOMAIN_UTF8_BAD if utf8 else []))
    if utf8 and rng.random() < 0.2:
        local = "j\u00f6rg"
    spec = f"{local}@{domain}"
    display = pick(rng, DISPLAY, DISPLAY_BAD)
    form = rng.random()
    if form < 0.25 and not display:
        return comment(rng) + spec + comment(rng)
    return f"{display}{comment(rng)} <{comment(rng)}{spec}{comment(rng)}>{comment(rng)}".strip()


def generate(rng, index):
    utf8 = rng.random() < 0.2
    tags = set()
    trick = rng.choice(TRICKS)
    name = rng.choice(FROM_NAME)
    if name != name.rstrip():
        tags.add("obs_colon_wsp")
    value = mailbox(rng, utf8)
    if trick == "second_mailbox":
        value += ", " + mailbox(rng, utf8)
    elif trick == "route":
        value = "<@attack.example,@any.example:admin@brand.example>"
    elif trick == "trailing":
        value = "<any@attack.example>admin@brand.example"
    elif trick == "group":
        value = "Team: " + mailbox(rng, utf8) + ";"
    elif trick == "empty_group":
        value = "undisclosed-recipients:;"
    elif trick == "comment_addr":
        value = "a@attack.example (admin@brand.example)"
    fields = [fold(rng, f"{name}: {value}")]
    fields += rng.sample(EXTRA, rng.randint(0, len(EXTRA)))
    if trick == "dup_from":
        fields.append("From: <admin@brand.example>")
    elif trick == "dup_subject":
        fields += ["Subject: a", "Subject: b"]
    elif trick == "sender":
        fields.append("Sender: " + mailbox(rng, utf8))
    elif trick == "resent":
        fields.append("Resent-From: " + mailbox(rng, utf8))
    elif trick == "no_from":
        fields = fields[1:] or ["Subject: none"]
    rng.shuffle(fields)
    header = "\r\n".join(fields) + "\r\n"
    if trick == "leading_space":
        header = " " + header
    elif trick == "bare_lf":
        header = header.replace("\r\n", "\n", 1)
    elif trick == "bare_cr":
        header = header.replace("\r\n", "\r", 1)
    elif trick == "nul":
        header = header.replace("@", "\0@", 1)
    elif trick == "ws_line":
        header = header.replace("\r\n", "\r\n \r\n", 1)
    elif trick == "fold_name":
        header = header.replace(f"{name}:", f"{name.strip()}\r\n :", 1)
    body = "" if trick == "missing_crlf" else "\r\nbody\r\n"
    if trick == "missing_crlf":
        header = header[:-2]
    data = (header + body).encode("utf-8")
    fname = f"gen-{index:05d}" + "".join(f"+{t}" for t in sorted(tags)) + (".utf8" if utf8 else "") + ".eml"
    return fname, data


# --- comparison --------------------------------------------------------------

def alabel_to_unicode(domain):
    labels = []
    for label in domain.split("."):
        if label.startswith("xn--"):
            try:
                label = codecs.decode(label[4:].encode("ascii"), "punycode")
            except UnicodeError:
                pass
        labels.append(label)
    return ".".join(labels)


def python_view(path, data):
    """(from_field_count, [domains]) as Python's strict policy sees the message."""
    if ".utf8." in os.path.basename(path):
        msg = email.message_from_string(data.decode("utf-8"), policy=email.policy.strict)
    else:
        msg = email.message_from_bytes(data, policy=email.policy.strict)
    fields = msg.get_all("From") or []
    domains = []
    defects = []
    if len(fields) == 1:
        header = fields[0]
        domains = [a.domain for a in header.addresses]
        defects = [type(d).__name__ for d in header.defects]
    return len(fields), domains, defects


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tool")
    ap.add_argument("corpus")
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--keep", help="write the generated corpus here")
    args = ap.parse_args()

    gen_dir = args.keep or tempfile.mkdtemp(prefix="relaygate-diff-")
    os.makedirs(gen_dir, exist_ok=True)
    rng = random.Random(5322)
    files = sorted(os.path.join(args.corpus, f) for f in os.listdir(args.corpus) if f.endswith(".eml"))
    for i in range(args.count):
        name, data = generate(rng, i)
        path = os.path.join(gen_dir, name)
        with open(path, "wb") as f:
            f.write(data)
        files.append(path)

    verdicts = {}
    for start in range(0, len(files), 500):
        out = subprocess.run([args.tool] + files[start:start + 500], check=True,
                             capture_output=True).stdout.decode("utf-8", "surrogateescape")
        for line in out.splitlines():
            parts = line.split("\t")
            verdicts[parts[0]] = parts[1:]

    failures, intentional, expectation_failures = [], [], []
    accepted = rejected = python_defects = stricter = 0
    reasons = {}
    for path in files:
        v = verdicts.get(path)
        if v is None:
            failures.append(f"{path}: no verdict from the tool")
            continue
        with open(path, "rb") as f:
            data = f.read()
        base = os.path.basename(path)
        expect = re.search(rb"^X-Expect: (accept|reject [a-z_0-9]+)\r\n", data, re.M)
        if expect:
            want = expect.group(1).decode()
            got = "accept" if v[0] == "ACCEPT" else f"reject {v[1]}"
            if want != got:
                expectation_failures.append(f"{base}: expected {want}, relaygate said {got}")
        if v[0] != "ACCEPT":
            rejected += 1
            reasons[v[1]] = reasons.get(v[1], 0) + 1
            try:
                n, _, d = python_view(path, data)
                if n == 1 and not d:
                    stricter += 1
            except Exception:
                pass
            continue
        accepted += 1
        ours_count = int(v[1])
        ours = [m.rsplit("@", 1)[1] for m in v[2].split(",")] if v[2] else []
        tags = set(re.findall(r"\+([a-z_0-9]+)", base)) | HANDWRITTEN_TAGS.get(base, set())
        try:
            n, theirs, defects = python_view(path, data)
            problem = None
            if n != 1:
                problem = f"Python sees {n} From fields"
            elif len(theirs) != ours_count:
                problem = f"mailbox count: relaygate {ours_count}, Python {len(theirs)}"
            elif [alabel_to_unicode(d).lower() for d in ours] != [d.lower() for d in theirs] and \
                    [d.lower() for d in ours] != [d.lower() for d in theirs]:
                problem = f"From domain: relaygate {ours}, Python {theirs}"
            if defects:
                python_defects += 1
        except Exception as e:  # strict policy raises on message defects
            problem = f"Python raised {type(e).__name__}: {e}"
        if problem:
            known = tags & INTENTIONAL.keys()
            (intentional if known else failures).append(f"{base}: {problem}" + (f" [{', '.join(sorted(known))}]" if known else ""))

    print(f"corpus: {len(files)} messages ({args.count} generated in {gen_dir})")
    print(f"relaygate accepted {accepted}, rejected {rejected}")
    for r, n in sorted(reasons.items(), key=lambda x: -x[1]):
        print(f"  {r}: {n}")
    print(f"rejected by relaygate while Python saw one From without defects: {stricter}")
    print(f"accepted by both, Python noted header defects: {python_defects}")
    print(f"intentional disagreements: {len(intentional)}")
    for line in intentional[:5]:
        print("  " + line)
    for tag, why in INTENTIONAL.items():
        print(f"  [{tag}] {why}")
    for line in expectation_failures:
        print("EXPECTATION " + line)
    for line in failures:
        print("DISAGREE " + line)
    if accepted < len(files) // 5:
        print("too few accepted messages for a meaningful comparison")
        return 1
    return 1 if failures or expectation_failures else 0


if __name__ == "__main__":
    sys.exit(main())
