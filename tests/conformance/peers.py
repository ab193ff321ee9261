"""The processes a conformance run talks to: a mock GIS server (gisgate
demo-upstream) and one gateway per certificate key type, each on a free
loopback port, each stopped when the run ends (also on an exception or
Ctrl-C: they are started in their own process group and killed with it).
"""

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, log, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening; log {log}:\n"
                               + open(log).read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"not listening on {port} after {timeout} s; log {log}")


class Peers:
    """Certificates, the upstream and the gateways, under `workdir`."""

    def __init__(self, gisgate, workdir):
        self.gisgate = gisgate
        self.dir = workdir
        self.procs = []
        self.ports = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs = []

    def _path(self, name):
        return os.path.join(self.dir, name)

    def certificate(self, name, key_type):
        """A self-signed certificate for localhost; its SHA-256 (hex)."""
        cert, key = self._path(name + ".crt"), self._path(name + ".key")
        subprocess.run([self.gisgate, "cert", "generate", "--cn", "localhost",
                        "--san", "localhost", "--san", "127.0.0.1",
                        "--key-type", key_type, "--force",
                        "--cert", cert, "--key", key],
                       check=True, stdout=subprocess.DEVNULL)
        der = ssl.PEM_cert_to_DER_cert(open(cert).read())
        return hashlib.sha256(der).hexdigest()

    def _start(self, name, argv, port):
        log = self._path(name + ".log")
        out = open(log, "w")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=self.dir,
                                start_new_session=True)
        self.procs.append(proc)
        wait_listening(port, proc, log)
        self.ports[name] = port
        return port

    def start_upstream(self):
        pin = self.certificate("upstream", "ecdsa")
        port = free_port()
        self._start("upstream", [self.gisgate, "demo-upstream", "--listen", f"127.0.0.1:{port}",
                                 "--cert", self._path("upstream.crt"),
                                 "--key", self._path("upstream.key")], port)
        return port, pin

    def start_gateway(self, name, key_type, upstream_port, pin):
        """A gateway with a `key_type` certificate and the default TLS
        policy (TLS 1.2 and 1.3, every AEAD forward-secret suite)."""
        self.certificate(name, key_type)
        port = free_port()
        config = self._path(name + ".toml")
        with open(config, "w") as f:
            f.write(f"""
[server]
protocol = "HTTPS"
https_listen = "127.0.0.1:{port}"
http_listen = ""

[tls]
cert = "{name}.crt"
key = "{name}.key"

[upstream]
url = "https://localhost:{upstream_port}"
pin_sha256 = ["{pin}"]

[observability]
listen = ""

[reload]
watch = false

[log]
level = "warn"
""")
        return self._start(name, [self.gisgate, "run", "--config", config], port)
