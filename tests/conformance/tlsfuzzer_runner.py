"""Runs tlsfuzzer scripts (tls_plan.py) against the gateways and reads
their verdicts."""

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass

from tls_plan import SCRIPTS

SUMMARY = re.compile(r"^(TOTAL|SKIP|PASS|XFAIL|FAIL|XPASS):\s*(\d+)", re.M)


@dataclass
class Outcome:
    script: str
    args: list
    cert: str
    verdict: str  # "pass", "FAIL", "TIMEOUT"
    counts: dict
    seconds: float
    log: str
    failed_probes: list


def argv_for(script, tlsfuzzer, port, explore):
    argv = [sys.executable, os.path.join(tlsfuzzer, "scripts", script.name),
            "-h", "127.0.0.1", "-p", str(port), *script.args]
    for probe in script.exclude:
        argv += ["-e", probe]
    if not explore:
        for probe, xf in script.xfail.items():
            argv += ["-x", probe]
            if xf.says:
                argv += ["-X", xf.says]
    return argv


def failed_probes(output):
    """The probe names tlsfuzzer lists after FAILED:/XPASSED:."""
    names = []
    grab = False
    for line in output.splitlines():
        if line.startswith(("FAILED:", "XPASSED:")):
            grab = True
            continue
        if grab and line.startswith("\t"):
            names.append(line.strip().strip("'"))
        else:
            grab = False
    return names


def run_one(script, cert, port, tlsfuzzer, logdir, timeout, explore):
    argv = argv_for(script, tlsfuzzer, port, explore)
    log = os.path.join(logdir, f"{script.label()}.{cert}.log".replace(" ", "_"))
    env = dict(os.environ, PYTHONPATH=tlsfuzzer)
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=timeout, text=True,
                              errors="replace")
        output, rc = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) \
            else (e.stdout or "")
        rc = None
    seconds = time.monotonic() - start
    with open(log, "w") as f:
        f.write(" ".join(argv) + "\n\n" + output)
    counts = {k: int(v) for k, v in SUMMARY.findall(output)}
    verdict = "TIMEOUT" if rc is None else ("pass" if rc == 0 else "FAIL")
    return Outcome(script.name, script.args, cert, verdict, counts, seconds, log,
                   failed_probes(output))


def run_all(ports, tlsfuzzer, logdir, quick, explore, only=None):
    """Every script of the plan (quick: the quick ones) against each
    certificate it applies to; outcomes in plan order."""
    outcomes = []
    timeout = 300 if quick else 900
    for script in SCRIPTS:
        if quick and not script.quick:
            continue
        if only and not any(o in script.name for o in only):
            continue
        for cert in script.certs:
            out = run_one(script, cert, ports[cert], tlsfuzzer, logdir, timeout, explore)
            print(f"  {out.verdict:7} {script.label():60} {cert:5} {out.seconds:6.1f}s "
                  f"{format_counts(out.counts)}", flush=True)
            for probe in out.failed_probes:
                print(f"          failed: {probe}", flush=True)
            outcomes.append(out)
    return outcomes


def format_counts(c):
    return " ".join(f"{k.lower()} {c[k]}" for k in ("PASS", "XFAIL", "FAIL", "XPASS", "SKIP")
                    if c.get(k))
