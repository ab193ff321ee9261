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
    # The XFail tags that explained failures.
    explained: list


HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = re.compile(r"^(.+?) ?\.\.\.\n", re.M)


def argv_for(script, tlsfuzzer, port, quick):
    path = os.path.join(tlsfuzzer, "scripts", script.name)
    shim = [os.path.join(HERE, "aead_suites.py")] if script.aead else []
    argv = [sys.executable, *shim, path, "-h", "127.0.0.1", "-p", str(port), *script.args]
    # The full run takes every probe; scripts pick a random subset of
    # their probes by default (often 40), which the quick run keeps.
    if not quick and "-n" not in script.args:
        argv += ["-n", "0"]
    for probe in script.exclude:
        argv += ["-e", probe]
    return argv


def failed_probes(output):
    """{probe name: what tlsfuzzer printed for it} for each probe listed
    after FAILED:."""
    names = []
    grab = False
    for line in output.splitlines():
        if line.startswith("FAILED:"):
            grab = True
            continue
        if grab and line.startswith("\t"):
            names.append(line.strip().strip("'"))
        else:
            grab = False
    parts = PROBE.split(output)
    said = {}
    for i in range(1, len(parts) - 1, 2):
        said.setdefault(parts[i].strip('"'), "")
        said[parts[i].strip('"')] += parts[i + 1]
    # A probe run several times ("name" repeat 2) prints under each run.
    return {name: "".join(v for k, v in said.items() if name in k) for name in names}


def expected(script, probe, said):
    """The XFail that explains this failure, if one does."""
    for xf in script.xfail:
        if re.search(xf.probe, probe) and (xf.says is None or xf.says in said):
            return xf
    return None


def run_one(script, cert, port, tlsfuzzer, logdir, timeout, explore, quick):
    argv = argv_for(script, tlsfuzzer, port, quick)
    log = os.path.join(logdir, f"{script.label()}.{cert}.log".replace(" ", "_")
                       .replace("/", "_"))
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
    failed = failed_probes(output)
    why = {p: None if explore else expected(script, p, said) for p, said in failed.items()}
    unexplained = [p for p, xf in why.items() if xf is None]
    explained = sorted({xf.tag for xf in why.values() if xf is not None})
    counts["XFAIL"] = len(failed) - len(unexplained)
    counts["FAIL"] = len(unexplained)
    if rc is None:
        verdict = "TIMEOUT"
    elif unexplained or (rc != 0 and not failed) or "TOTAL" not in counts:
        verdict = "FAIL"
    else:
        verdict = "pass"
    return Outcome(script.name, script.args, cert, verdict, counts, seconds, log,
                   unexplained, explained)


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
            out = run_one(script, cert, ports[cert], tlsfuzzer, logdir, timeout, explore, quick)
            print(f"  {out.verdict:7} {script.label():60} {cert:5} {out.seconds:6.1f}s "
                  f"{format_counts(out.counts)}", flush=True)
            for probe in out.failed_probes[:20]:
                print(f"          failed: {probe}", flush=True)
            if len(out.failed_probes) > 20:
                print(f"          ... and {len(out.failed_probes) - 20} more (log {out.log})")
            outcomes.append(out)
    return outcomes


def format_counts(c):
    """tlsfuzzer's own pass count; failures split into expected (xfail,
    explained in tls_plan.py) and not."""
    return " ".join(f"{k.lower()} {c[k]}" for k in ("PASS", "XFAIL", "FAIL", "SKIP")
                    if c.get(k))
