#!/usr/bin/python3
# Checks every policy example with the built binary (`relaygate check`) and
# against policy/schema/policy.schema.json. echospoofing-misconfig.json must
# be schema-valid yet refused by the linter, naming the EchoSpoofing risk.
import glob, json, os, subprocess, sys

import jsonschema

relaygate, source = sys.argv[1], sys.argv[2]
schema = json.load(open(os.path.join(source, "policy/schema/policy.schema.json")))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
failures = 0
examples = sorted(glob.glob(os.path.join(source, "policy/examples/*.json")))
assert len(examples) >= 6, examples
for path in examples:
    name = os.path.basename(path)
    errors = list(validator.iter_errors(json.load(open(path, encoding="utf-8"))))
    for e in errors:
        print(f"{name}: schema: {'/'.join(map(str, e.path))}: {e.message}")
    run = subprocess.run([relaygate, "check", "--policy", path], capture_output=True, text=True)
    refused = name == "echospoofing-misconfig.json"
    ok = not errors and (
        (run.returncode == 1 and "EchoSpoofing" in run.stderr and "shared_network_overlap" in run.stderr)
        if refused else
        (run.returncode == 0 and run.stdout.startswith("policy OK: ")))
    print(f"{'ok ' if ok else 'FAIL'} {name}: exit {run.returncode}: {run.stdout.strip() or run.stderr.strip()[:200]}")
    failures += not ok

# explain: the quickstart decides as documented, with the exit status scripts use.
qs = os.path.join(source, "policy/examples/quickstart.json")
for mail_from, expect_rc, expect in [("a@demo.example", 0, '"accept"'), ("a@other.example", 1, "envelope_domain_unauthorized")]:
    run = subprocess.run([relaygate, "explain", "--policy", qs, "--client-ip", "127.0.0.1",
                          "--mail-from", mail_from, "--from", mail_from, "--json"], capture_output=True, text=True)
    ok = run.returncode == expect_rc and expect in run.stdout
    print(f"{'ok ' if ok else 'FAIL'} explain {mail_from}: exit {run.returncode}")
    failures += not ok

# explain lists the limits that apply, each with its store key and a fresh
# counter's budget (explain has no store).
vl = os.path.join(source, "policy/examples/volume-limits.json")
run = subprocess.run([relaygate, "explain", "--policy", vl, "--client-ip", "203.0.113.9",
                      "--auth-user", "acme-app", "--mail-from", "a@news.acme.example", "--json"],
                     capture_output=True, text=True)
try:
    limits = json.loads(run.stdout)["mail_from"]["limits"]
except (ValueError, KeyError, TypeError):
    limits = []
keys = [(l["key"], l["left"], l["burst"]) for l in limits]
ok = run.returncode == 0 and keys == [
    ("rl:{acme}:tenant:acme:messages:60", 20, 20),
    ("rl:{acme}:tenant:acme:recipients:3600", 5000, 5000),
    ("rl:{acme}:tenant:acme:bytes:86400", 2 << 30, 2 << 30),
    ("rl:{acme}:identity:sasl:acme-app:recipients:3600", 200, 200),
    ("rl:{acme}:domain:news.acme.example:messages:3600", 100, 100)]
print(f"{'ok ' if ok else 'FAIL'} explain volume-limits: exit {run.returncode}: {keys}")
failures += not ok
sys.exit(1 if failures else 0)
