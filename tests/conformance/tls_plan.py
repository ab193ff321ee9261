"""Which tlsfuzzer scripts run against gisgate, with which options, and
every failure we expect with its reason: the one place for them.

gisgate's policy (README, Configuration reference): TLS 1.2 and 1.3,
AEAD forward-secret suites only (ECDHE with AES-GCM or ChaCha20-Poly1305;
no CBC, no static RSA key exchange, no finite-field DHE), groups X25519,
secp256r1 and secp384r1 (rustls' aws-lc-rs provider; X25519MLKEM768
too), no renegotiation, no heartbeat, no client certificates. Scripts
whose subject is none of these are left out (NOT_APPLICABLE says why).
Rows named for the RFC behaviour they test; `xfail` keys are tlsfuzzer
probe names, exactly as the script prints them.
"""

from dataclasses import dataclass, field

RSA = "rsa"
ECDSA = "ecdsa"

# TLS 1.2 options: ECDHE key exchange (-d) with an AEAD suite the gateway
# offers; tlsfuzzer defaults to static RSA with AES-CBC, which it does not.
TLS12_RSA = ["-d", "-C", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
TLS12_ECDSA = ["-d", "-C", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]


@dataclass
class XFail:
    reason: str
    # A substring of tlsfuzzer's error that must appear (-X), so that a
    # different failure of the same probe is still a failure.
    says: str = None


@dataclass
class Script:
    name: str
    certs: tuple = (RSA,)
    args: list = field(default_factory=list)
    quick: bool = False
    xfail: dict = field(default_factory=dict)
    exclude: dict = field(default_factory=dict)

    def label(self):
        return " ".join([self.name, *self.args])


SCRIPTS = [
    # --- TLS 1.3 ---
    Script("test-tls13-conversation.py", certs=(RSA, ECDSA), quick=True),
    Script("test-tls13-finished.py", quick=True),
    Script("test-tls13-finished-plaintext.py"),
    Script("test-tls13-keyupdate.py", quick=True),
    Script("test-tls13-ccs.py"),
    Script("test-tls13-multiple-ccs-messages.py"),
    Script("test-tls13-hrr.py", quick=True),
    Script("test-tls13-version-negotiation.py"),
    Script("test-tls13-legacy-version.py"),
    Script("test-tls13-record-padding.py"),
    Script("test-tls13-zero-length-data.py"),
    Script("test-tls13-symetric-ciphers.py"),
    Script("test-tls13-ecdhe-curves.py"),
    Script("test-tls13-keyshare-omitted.py"),
    Script("test-tls13-nociphers.py"),
    Script("test-tls13-invalid-ciphers.py"),
    Script("test-tls13-unencrypted-alert.py"),
    Script("test-tls13-empty-alert.py"),
    Script("test-tls13-zero-content-type.py"),
    Script("test-tls13-large-number-of-extensions.py"),
    Script("test-tls13-shuffled-extentions.py"),
    Script("test-tls13-connection-abort.py"),
    Script("test-tls13-0rtt-garbage.py"),
    Script("test-tls13-unrecognised-groups.py"),
    Script("test-tls13-serverhello-random.py"),
    Script("test-tls13-session-resumption.py"),
    Script("test-tls13-count-tickets.py"),
    Script("test-tls13-signature-algorithms.py"),
    Script("test-tls13-rsa-signatures.py"),
    Script("test-tls13-record-layer-limits.py", quick=True),
    Script("test-tls13-lengths.py", args=["-n", "20"]),
    Script("test-tls13-ecdsa-support.py", certs=(ECDSA,)),
    # --- TLS 1.2 ---
    Script("test-conversation.py", certs=(RSA,), args=TLS12_RSA, quick=True),
    Script("test-conversation.py", certs=(ECDSA,), args=TLS12_ECDSA, quick=True),
    Script("test-fuzzed-finished.py"),
    Script("test-fuzzed-MAC.py", args=TLS12_RSA),
    Script("test-fuzzed-ciphertext.py", args=TLS12_RSA, quick=True),
    Script("test-fuzzed-plaintext.py", args=TLS12_RSA + ["--random", "200"]),
    Script("test-record-layer-fragmentation.py", args=TLS12_RSA, quick=True),
    Script("test-record-size-limit.py"),
    Script("test-invalid-client-hello.py", quick=True),
    Script("test-invalid-client-hello-w-record-overflow.py"),
    Script("test-large-hello.py", args=["-d"]),
    Script("test-client-hello-max-size.py", args=["-d"], quick=True),
    Script("test-ccs.py", args=TLS12_RSA),
    Script("test-version-numbers.py", args=TLS12_RSA),
    Script("test-downgrade-protection.py", args=["-d", "--server-max-protocol=TLSv1.3"],
           quick=True),
    Script("test-extended-master-secret-extension.py", args=["-d"], quick=True),
    Script("test-fallback-scsv.py", args=["-d", "--tls-1.3"]),
    Script("test-invalid-version.py"),
    Script("test-truncating-of-client-hello.py"),
    Script("test-truncating-of-finished.py"),
    Script("test-message-duplication.py"),
    Script("test-message-skipping.py", args=["-d"]),
    Script("test-renegotiation-disabled.py", args=TLS12_RSA),
    Script("test-sessionID-resumption.py", args=["-d"]),
    Script("test-session-ticket-resumption.py", args=["-d"]),
    Script("test-aes-gcm-nonces.py", args=TLS12_RSA),
    Script("test-chacha20.py"),
    Script("test-x25519.py"),
    Script("test-lengths.py", args=TLS12_RSA + ["-n", "20"]),
    Script("test-zero-length-data.py", args=TLS12_RSA),
    Script("test-invalid-content-type.py", args=TLS12_RSA),
    Script("test-invalid-cipher-suites.py"),
    Script("test-invalid-compression-methods.py"),
    Script("test-large-number-of-extensions.py", args=["-d"]),
    Script("test-extensions.py"),
    Script("test-empty-extensions.py"),
    Script("test-signature-algorithms.py", args=["-d"]),
    Script("test-signature-algorithms.py", certs=(ECDSA,), args=["--ecdsa"]),
    Script("test-ecdsa-sig-flexibility.py", certs=(ECDSA,)),
    Script("test-sig-algs.py", args=["-d"]),
    Script("test-alpn-negotiation.py", args=["-d"]),
    Script("test-invalid-server-name-extension.py"),
    Script("test-connection-abort.py", args=TLS12_RSA),
    Script("test-point-extension.py"),
    Script("test-unsupported-curve-fallback.py"),
    Script("test-sslv2hello-protocol.py"),
    Script("test-no-heartbeat.py", args=["-d"]),
    Script("test-export-ciphers-rejected.py"),
    Script("test-ssl-death-alert.py", args=["-d"]),
    Script("test-hello-request-by-client.py", args=["-d"]),
]

NOT_APPLICABLE = {}
