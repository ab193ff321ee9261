#!/usr/bin/env python3
"""TLS and HTTP/2 conformance of gisgate's client-facing side.

    python3 tests/conformance/run.py [--quick] [--only tls|h2] [--gisgate BIN]
                                     [--tlsfuzzer DIR] [--logs DIR]

Starts a mock GIS server and two gateways (an RSA and an ECDSA
certificate, made here) on loopback, runs tlsfuzzer's scripts
(tls_plan.py) and the HTTP/2 checks (h2_checks.py) against them, prints
a table and exits non-zero on any unexpected result. tlsfuzzer is not
on PyPI: --tlsfuzzer (or $TLSFUZZER_DIR) names a checkout of it; without
one the TLS part is reported as SKIPPED (README, Testing).
"""

import argparse
import os
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peers import Peers  # noqa: E402
import tlsfuzzer_runner  # noqa: E402
import h2_checks  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few minutes: the main scripts")
    p.add_argument("--only", choices=["tls", "h2"])
    p.add_argument("--script", action="append", help="only tlsfuzzer scripts naming this")
    p.add_argument("--explore", action="store_true",
                   help="ignore the expected failures (to see every failure)")
    p.add_argument("--gisgate", default=os.environ.get("GISGATE_BIN"))
    p.add_argument("--tlsfuzzer", default=os.environ.get("TLSFUZZER_DIR"))
    p.add_argument("--logs", help="keep certificates, configs and logs here")
    return p.parse_args()


def find_gisgate(given):
    if given:
        return given
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    for profile in ("release", "debug"):
        path = os.path.join(target, profile, "gisgate")
        if os.path.exists(path):
            return path
    sys.exit("no gisgate binary: build it (cargo build) or pass --gisgate")


def tls_part(args, peers, logs, table):
    if not args.tlsfuzzer or not os.path.isdir(os.path.join(args.tlsfuzzer, "scripts")):
        print("SKIPPED: TLS conformance: no tlsfuzzer checkout (--tlsfuzzer or $TLSFUZZER_DIR);"
              " it is on neither PyPI nor Debian (README, Testing)", flush=True)
        return True
    print("== TLS (tlsfuzzer)", flush=True)
    outcomes = tlsfuzzer_runner.run_all(peers.ports, args.tlsfuzzer, logs, args.quick,
                                        args.explore, args.script)
    bad = [o for o in outcomes if o.verdict != "pass"]
    print(f"TLS: {len(outcomes) - len(bad)} scripts passed, {len(bad)} failed", flush=True)
    table.append("| script | certificate | result | probes | expected failures (tls_plan.py) |\n"
                 "|---|---|---|---|---|")
    for o in outcomes:
        table.append(f"| `{' '.join([o.script, *o.args])}` | {o.cert} | {o.verdict} | "
                     f"{tlsfuzzer_runner.format_counts(o.counts)} | {', '.join(o.explained)} |")
    return not bad


def h2_part(args, peers, table):
    print("== HTTP/2 (h2 checks)", flush=True)
    results = h2_checks.run_all(peers.ports["ecdsa"])
    bad = [r for r in results if not r.ok]
    xfail = [r for r in results if r.verdict == "xfail"]
    print(f"HTTP/2: {len(results) - len(bad) - len(xfail)} passed, {len(xfail)} expected "
          f"failures, {len(bad)} failed", flush=True)
    table.append("\n| RFC 9113 | case | gisgate answers | result |\n|---|---|---|---|")
    for r in results:
        table.append(f"| §{r.section} | {r.what} | {r.detail} | {r.verdict} |")
    return not bad


def main():
    # Stopped by a signal, the run still stops what it started (the `with`
    # below): a background job starts with SIGINT ignored, and SIGTERM
    # would end Python without unwinding.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse_args()
    gisgate = find_gisgate(args.gisgate)
    logs = args.logs or tempfile.mkdtemp(prefix="gisgate-conformance-")
    os.makedirs(logs, exist_ok=True)
    print(f"gisgate {gisgate}; logs in {logs}", flush=True)
    ok = True
    table = []
    with Peers(gisgate, logs) as peers:
        upstream, pin = peers.start_upstream()
        peers.start_gateway("rsa", "rsa", upstream, pin)
        peers.start_gateway("ecdsa", "ecdsa", upstream, pin)
        if args.only in (None, "tls"):
            ok &= tls_part(args, peers, logs, table)
        if args.only in (None, "h2"):
            ok &= h2_part(args, peers, table)
    with open(os.path.join(logs, "table.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    print(f"conformance: {'ok' if ok else 'UNEXPECTED FAILURES'} (tables: {logs}/table.md)",
          flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
