"""Which tlsfuzzer scripts run against gisgate, with which options, and
every failure we expect with its reason: the one place for them.

gisgate's TLS policy (README, Configuration reference): TLS 1.2 and 1.3,
AEAD forward-secret suites only (ECDHE with AES-GCM or ChaCha20-Poly1305;
no CBC, no static RSA key exchange, no finite-field DHE), the groups of
rustls' aws-lc-rs provider (X25519, secp256r1, secp384r1,
X25519MLKEM768), no renegotiation, no heartbeat, no client certificates,
no 0-RTT, an RSA 2048 or an ECDSA P-256 certificate.

A probe's failure is expected when an `XFail` of its script matches it:
`probe` is a regular expression searched in the probe's name and `says`
a text that must appear in what tlsfuzzer printed for it, so the same
probe failing some other way is still a failure. Probes that test
something gisgate does not offer at all are excluded (`exclude`, passed
to tlsfuzzer as -e); scripts that test only such things are in
NOT_APPLICABLE, with why.
"""

from dataclasses import dataclass, field

RSA = "rsa"
ECDSA = "ecdsa"

# TLS 1.2 with ECDHE (-d) and an AES-GCM suite the gateway offers;
# tlsfuzzer's default is static RSA with AES-CBC, which it does not.
TLS12_RSA = ["-d", "-C", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
TLS12_ECDSA = ["-d", "-C", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]


@dataclass
class XFail:
    reason: str
    probe: str = ""
    says: str = None
    # The constant's name below, for the tables (set at the end).
    tag: str = ""


@dataclass
class Script:
    name: str
    certs: tuple = (RSA,)
    args: list = field(default_factory=list)
    quick: bool = False
    # Run through aead_suites.py: the script's ECDHE AES-CBC suites are
    # taken as AES-GCM (for scripts whose subject is not the cipher).
    aead: bool = False
    xfail: list = field(default_factory=list)
    exclude: dict = field(default_factory=dict)

    def label(self):
        return " ".join([self.name, *self.args])


# ---- why: rustls (the TLS library) ------------------------------------
FINISHED_LENGTH = XFail(
    "rustls compares a Finished of the wrong length with the expected "
    "verify_data and answers decrypt_error, where tlsfuzzer wants "
    "decode_error (RFC 8446 §6.2 allows either reading: the message is both "
    "malformed and unverifiable); the handshake fails either way",
    probe=r"truncation|padding|empty|max size payload", says='received "decrypt_error"')
PLAINTEXT_FINISHED = XFail(
    "an unencrypted Finished after the server's encrypted flight: rustls "
    "tries to decrypt it and answers bad_record_mac, tlsfuzzer wants "
    "unexpected_message; the handshake fails either way",
    probe="Unencrypted Finished", says='received "bad_record_mac"')
KEYUPDATE_LAZY = XFail(
    "rustls answers a KeyUpdate(update_requested) with its own KeyUpdate "
    "just before its next application data record, as RFC 8446 §4.6.3 "
    "requires (\"prior to sending its next Application Data record\"), and "
    "as OpenSSL does since 1.1.1c; tlsfuzzer waits for it before sending "
    "the rest of its request, which the server needs before it answers",
    probe="app data split", says="Timeout")
INTERLEAVED_NO_ALERT = XFail(
    "rustls refuses records interleaved with a fragmented handshake "
    "message (RFC 8446 §5.1) with MessageInterleavedWithHandshakeMessage "
    "but queues no alert for it: the connection is closed without "
    "unexpected_message",
    probe="interleaved|appdata between|fragmented keyupdate")
MIDDLEBOX_CCS = XFail(
    "rustls drops up to 2 change_cipher_spec records in a TLS 1.3 "
    "handshake, as RFC 8446 §5 and appendix D.4 allow (\"MUST simply drop "
    "it\"); tlsfuzzer wants the second refused. tlslite-ng expects the "
    "same failures of itself (tests/tlslite-ng.json)",
    probe="CCS", says="Timeout")
TWO_BYTE_CCS = XFail(
    "a 2-byte change_cipher_spec: rustls answers decode_error, tlsfuzzer "
    "wants unexpected_message",
    probe="two bytes long CCS", says='received "decode_error"')
NO_PSK_KE = XFail(
    "rustls does not implement psk_ke (resumption without (EC)DHE, RFC 8446 "
    "§4.2.9): it answers with a full handshake",
    probe="PSK_ONLY")
NO_TICKET_WITHOUT_PSK_MODES = XFail(
    "rustls sends NewSessionTicket only to a client that offered "
    "psk_key_exchange_modes (RFC 8446 §4.2.9: a ticket is no use to it); "
    "this probe's ClientHello has none and waits for a ticket",
    probe="After NewSessionTicket", says="ApplicationData")
LEGACY_VERSION = XFail(
    "with supported_versions present rustls ignores legacy_version (RFC "
    "8446 §4.2.1: servers MUST NOT use it for negotiation); tlsfuzzer wants "
    "values other than 0x0303 refused",
    probe=r"version \(", says="Handshake(server_hello)")
EMPTY_ALERT = XFail(
    "an empty or padded-empty alert record: rustls answers decode_error, "
    "tlsfuzzer wants unexpected_message",
    probe="empty alert", says='received "decode_error"')
ZERO_CONTENT_NO_ALERT = XFail(
    "a TLS 1.3 record whose inner plaintext is all zeros: rustls refuses it "
    "(IllegalTlsInnerPlaintext) but queues no alert, so the connection is "
    "closed without unexpected_message",
    probe="zero content type", says="Unexpected closure")
def handshake_64k(probe):
    """The probes (by name) whose handshake message passes 64 KiB."""
    return XFail(
        tag="HANDSHAKE_64K",
        reason="rustls takes handshake messages of at most 64 KiB "
        "(HandshakePayloadTooLarge) and queues no alert for a larger one: "
        "the connection is closed (cleanly since gisgate's lingering close) "
        "without decode_error",
        probe=probe, says="Unexpected closure")
RECORD_LIMIT = XFail(
    "rustls accepts TLS 1.3 records up to the TLS 1.2 limit (2^14 + 2048 "
    "bytes of ciphertext) and decrypts before it checks the size, so a "
    "too-large record with a broken tag is bad_record_mac, not "
    "record_overflow (RFC 8446 §5.2); the record is refused either way",
    probe="too big ciphertext", says='received "bad_record_mac"')
RECORD_LIMIT_HELLO = XFail(
    "rustls takes a plaintext record of up to 2^14 + 2048 bytes, so a "
    "ClientHello record up to 2048 bytes over 2^14 is answered, not refused "
    "with record_overflow",
    probe="too big ClientHello|over fragmentation limit", says="Handshake(server_hello)")
OTHER_CURVES = XFail(
    "the ECDSA certificate is P-256: a client offering only schemes for "
    "other curves is refused with handshake_failure, as it must be "
    "(tlsfuzzer's own server holds P-384 and P-521 certificates too)",
    probe="secp384r1|secp521r1|brainpool", says="handshake_failure")
SIGALG_LATE = XFail(
    "a client offering only signature schemes the key cannot make "
    "(ecdsa_sha1 or ecdsa_sha224 in TLS 1.3; rsa_pss_pss_*, which need an "
    "RSASSA-PSS key, not rsaEncryption): rustls picks the certificate, "
    "sends ServerHello and fails with handshake_failure when it must sign; "
    "tlsfuzzer wants the failure before ServerHello",
    probe="ecdsa_sha1|ecdsa_sha224|rsa_pss_pss|only legacy|only undefined",
    says="Handshake(server_hello)")
EARLY_DATA_INTERLEAVED = XFail(
    "an undecryptable record after the first record that decrypts: rustls "
    "refuses it (RejectedEarlyDataInterleavedWithHandshakeMessage) but "
    "queues no alert",
    probe="undecryptable record later", says="Unexpected closure")
DOWNGRADE_OLD_VERSION = XFail(
    "TLS 1.0 and 1.1 are refused with protocol_version (tls.protocols "
    "allows neither); the probe wants a TLS 1.1 handshake to check its "
    "downgrade sentinel",
    probe=r"\(3, [12]\)|TLSv1\.1|TLSv1\.0|SSL", says="protocol_version")
EARLY_DATA_SKIP = XFail(
    "rejected 0-RTT: rustls skips undecryptable early data up to 16 KiB, "
    "but counts a skipped record again each time it looks at the buffer "
    "while the next record is incomplete (three times in gisgate's "
    "stream), so above about 5.4 KB of early data the handshake fails with "
    "bad_record_mac. A rustls defect; only clients with a 0-RTT ticket "
    "from another server send early data to gisgate, which issues none. "
    "Run with --num-bytes 4000 the same probes pass",
    probe="0-RTT|early", says="bad_record_mac")

HRR_ORDER = XFail(
    "a second ClientHello (after HelloRetryRequest) with its extensions in "
    "reverse order: rustls checks that the set matches the first, not the "
    "order, and goes on; tlsfuzzer wants illegal_parameter (RFC 8446 §4.1.2 "
    "asks the client to change nothing else)",
    probe="HRR reversed order", says="Handshake(server_hello)")
KNOWN_IDS_IN_RANGE = XFail(
    "the ranges of \"unassigned\" ids hold ones rustls parses (tlslite's "
    "list predates some; 65281 renegotiation_info and 65037 "
    "encrypted_client_hello among them), whose empty or random body does "
    "not parse: decode_error is the right answer",
    probe="range from (2|52|6[0-9]{4}) ", says='decode_error')

NO_RENEGOTIATION = XFail(
    "renegotiation: rustls answers a renegotiating ClientHello with a "
    "no_renegotiation warning (RFC 5746 leaves it to the server)",
    probe="renegotiat", says="no_renegotiation")
EMS_RESUME_ALERT = XFail(
    "resuming an extended-master-secret session without the extension is "
    "refused, as RFC 7627 §5.3 requires; rustls says illegal_parameter "
    "where tlsfuzzer wants handshake_failure (the RFC names no alert)",
    probe="EMS with session resume without extension", says='received "illegal_parameter"')
NO_SHA1_SIGNATURES = XFail(
    "a TLS 1.2 client that allows only SHA-1 or SHA-224 signatures (or, "
    "without signature_algorithms, implies SHA-1, RFC 5246 §7.4.1.4.1): "
    "rustls makes no such signature and refuses with handshake_failure",
    probe="SHA-1|sha1|sha224", says="handshake_failure")
ECDSA_HASH_PER_CURVE = XFail(
    "rustls signs with a P-256 key only as ecdsa_secp256r1_sha256, in TLS "
    "1.2 too (where RFC 5246 lets any hash go with the curve): a client "
    "offering only SHA-384 or SHA-512 with ECDSA is refused, and with no "
    "alert (rustls: incompatible signing key, Error::General)",
    probe="sha384\\+ecdsa|sha512\\+ecdsa", says="Unexpected closure")
UNKNOWN_CONTENT_TYPE = XFail(
    "a heartbeat record (content type 24) to a server that does not do "
    "heartbeat: rustls refuses it with decode_error, tlsfuzzer wants "
    "unexpected_message",
    probe="heart", says='received "decode_error"')
WARNING_FLOOD = XFail(
    "after 4 warning alerts rustls ends the connection "
    "(TooManyWarningAlertsReceived, the SSL Death Alert defence) without "
    "sending an alert of its own",
    probe="with getting alert", says="ExpectAlert")
EXTENSIONS_THAT_PARSE = XFail(
    "the ClientHello's filler extensions include ids rustls parses "
    "(renegotiation_info, encrypted_client_hello...) with bodies that do "
    "not parse: decode_error is the right answer",
    probe="multiple extensions", says='decode_error')
ALPN_ON_RESUMPTION = XFail(
    "a resumption that asks for another ALPN protocol: rustls resumes "
    "with the protocol now chosen, tlsfuzzer expects the resumption to "
    "keep the first (tlslite-ng excludes this probe for itself too)",
    probe="resumption with alpn change", says="ApplicationData")
NO_TLS11 = XFail("TLS 1.1 is not offered (tls.protocols refuses it): protocol_version",
                 probe=r"TLSv1\.1|to 1\.1$", says="protocol_version")
NO_DHE = XFail("finite-field DHE suites are not offered", probe="DHE",
               says="handshake_failure")

# ---- why: not offered ---------------------------------------------------
NO_CCM = XFail("AES-CCM suites are not offered (rustls has none)",
               probe="CCM", says="handshake_failure")
NO_X448_P521 = XFail("X448 and secp521r1 are not offered (rustls' aws-lc-rs provider has "
                     "X25519, secp256r1, secp384r1 and X25519MLKEM768)",
                     probe="x448|secp521r1", says="handshake_failure")
NO_FFDHE = XFail("finite-field groups (ffdhe2048...) are not offered",
                 probe="ffdhe|FFDHE", says="handshake_failure")
MISSING_KEY_SHARE = XFail(
    "a TLS 1.3 ClientHello without key_share: rustls answers "
    "handshake_failure, tlsfuzzer wants missing_extension (RFC 8446 §9.2)",
    probe="key_share extension omitted", says='received "handshake_failure"')

SCRIPTS = [
    # ---- TLS 1.3 ----
    Script("test-tls13-conversation.py", certs=(RSA, ECDSA), quick=True),
    Script("test-tls13-finished.py", quick=True,
           xfail=[FINISHED_LENGTH, handshake_64k(r"pad_right \d{6,}")]),
    Script("test-tls13-finished-plaintext.py", xfail=[PLAINTEXT_FINISHED]),
    Script("test-tls13-keyupdate.py", args=["--coalescing"], quick=True,
           xfail=[KEYUPDATE_LAZY, INTERLEAVED_NO_ALERT]),
    Script("test-tls13-ccs.py", quick=True),
    Script("test-tls13-multiple-ccs-messages.py", xfail=[MIDDLEBOX_CCS]),
    Script("test-tls13-hrr.py", quick=True),
    Script("test-tls13-version-negotiation.py", args=TLS12_RSA, quick=True, xfail=[NO_TLS11]),
    Script("test-tls13-legacy-version.py", xfail=[LEGACY_VERSION]),
    Script("test-tls13-record-padding.py"),
    Script("test-tls13-zero-length-data.py", xfail=[INTERLEAVED_NO_ALERT]),
    Script("test-tls13-symetric-ciphers.py", xfail=[NO_CCM]),
    Script("test-tls13-ecdhe-curves.py", xfail=[NO_X448_P521]),
    Script("test-tls13-keyshare-omitted.py", xfail=[MISSING_KEY_SHARE]),
    Script("test-tls13-nociphers.py"),
    Script("test-tls13-invalid-ciphers.py"),
    Script("test-tls13-unencrypted-alert.py"),
    Script("test-tls13-empty-alert.py", xfail=[EMPTY_ALERT]),
    Script("test-tls13-zero-content-type.py", xfail=[ZERO_CONTENT_NO_ALERT]),
    Script("test-tls13-large-number-of-extensions.py", xfail=[KNOWN_IDS_IN_RANGE]),
    Script("test-tls13-shuffled-extentions.py", xfail=[HRR_ORDER, KNOWN_IDS_IN_RANGE]),
    Script("test-tls13-connection-abort.py", xfail=[NO_TICKET_WITHOUT_PSK_MODES]),
    Script("test-tls13-0rtt-garbage.py", aead=True, args=["-d", "--num-bytes", "4000"],
           xfail=[EARLY_DATA_INTERLEAVED]),
    Script("test-tls13-0rtt-garbage.py", aead=True, args=["-d"],
           xfail=[EARLY_DATA_SKIP, EARLY_DATA_INTERLEAVED]),
    Script("test-tls13-unrecognised-groups.py", xfail=[NO_FFDHE]),
    Script("test-tls13-serverhello-random.py", xfail=[NO_X448_P521, NO_FFDHE]),
    Script("test-tls13-session-resumption.py", xfail=[NO_PSK_KE],
           args=["-d", "--tls1.2-cipher", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]),
    Script("test-tls13-count-tickets.py"),
    Script("test-tls13-signature-algorithms.py", xfail=[handshake_64k(r"3\d{4} "), SIGALG_LATE]),
    Script("test-tls13-rsa-signatures.py", xfail=[SIGALG_LATE]),
    Script("test-tls13-record-layer-limits.py", quick=True,
           xfail=[RECORD_LIMIT, RECORD_LIMIT_HELLO, FINISHED_LENGTH]),
    Script("test-tls13-ecdsa-support.py", certs=(ECDSA,), xfail=[SIGALG_LATE, OTHER_CURVES]),
    # ---- TLS 1.2 ----
    Script("test-conversation.py", certs=(RSA,), args=TLS12_RSA, quick=True),
    Script("test-conversation.py", certs=(ECDSA,), args=TLS12_ECDSA, quick=True),
    Script("test-fuzzed-ciphertext.py", args=TLS12_RSA, quick=True),
    Script("test-record-layer-fragmentation.py", args=TLS12_RSA, quick=True,
           xfail=[handshake_64k("maximum size"), RECORD_LIMIT_HELLO]),
    Script("test-ccs.py", args=TLS12_RSA, xfail=[TWO_BYTE_CCS]),
    Script("test-version-numbers.py", args=TLS12_RSA),
    Script("test-downgrade-protection.py", aead=True, quick=True,
           args=["-d", "--server-max-protocol=TLSv1.3"], xfail=[DOWNGRADE_OLD_VERSION]),
    Script("test-extended-master-secret-extension.py", aead=True, args=["-d"], quick=True,
           xfail=[NO_RENEGOTIATION, EMS_RESUME_ALERT, NO_TLS11, NO_DHE]),
    Script("test-renegotiation-disabled.py", args=TLS12_RSA),
    Script("test-zero-length-data.py", args=TLS12_RSA),
    Script("test-invalid-content-type.py", args=TLS12_RSA),
    Script("test-connection-abort.py", args=TLS12_RSA),
    Script("test-large-hello.py", aead=True, args=["-d"],
           # Every probe's subject is a ClientHello's size (up to 2^24):
           # all those past 64 KiB close.
           xfail=[handshake_64k(""), EXTENSIONS_THAT_PARSE]),
    Script("test-client-hello-max-size.py", aead=True, args=["-d"],
           xfail=[handshake_64k("max client hello")]),
    Script("test-message-skipping.py", aead=True, args=["-d"]),
    Script("test-sessionID-resumption.py", aead=True, args=["-d"]),
    Script("test-session-ticket-resumption.py", aead=True, args=["-d"],
           xfail=[NO_RENEGOTIATION]),
    Script("test-large-number-of-extensions.py", aead=True, args=["-d"],
           xfail=[handshake_64k(r"1637\d extensions")]),
    Script("test-signature-algorithms.py", certs=(ECDSA,), aead=True, args=["--ecdsa"],
           xfail=[handshake_64k(r"3\d{4}|tolerance max"), NO_SHA1_SIGNATURES]),
    Script("test-ecdsa-sig-flexibility.py", certs=(ECDSA,), aead=True,
           xfail=[NO_SHA1_SIGNATURES, ECDSA_HASH_PER_CURVE]),
    Script("test-alpn-negotiation.py", aead=True, args=["-d"],
           xfail=[NO_RENEGOTIATION, ALPN_ON_RESUMPTION]),
    Script("test-no-heartbeat.py", aead=True, args=["-d"], xfail=[UNKNOWN_CONTENT_TYPE]),
    Script("test-hello-request-by-client.py", aead=True, args=["-d"]),
    Script("test-ssl-death-alert.py", aead=True, args=["-d"], xfail=[WARNING_FLOOD]),
]

NOT_APPLICABLE = {
    "test-tls13-lengths.py, test-lengths.py":
        "need a server that echoes what it reads (tlslite-ng's --echo); "
        "gisgate answers HTTP",
    "test-record-size-limit.py":
        "the record_size_limit extension (RFC 8449), which rustls does not "
        "implement",
    "test-fuzzed-MAC.py, test-fuzzed-padding.py, test-lucky13.py, "
    "test-encrypt-then-mac*.py, test-atypical-padding.py":
        "CBC's MAC and padding: gisgate offers no CBC suite",
    "test-bleichenbacher-*.py, test-invalid-rsa-key-exchange-messages.py, "
    "test-truncating-of-kRSA-client-key-exchange.py":
        "static RSA key exchange, not offered",
    "test-dhe-*.py, test-ffdhe-*.py, test-tls13-ffdhe-*.py":
        "finite-field DHE, not offered",
    "test-aesccm.py, test-export-ciphers-rejected.py, test-sslv2-*.py, "
    "test-SSLv3-padding.py":
        "suites or protocol versions not offered (each is refused; the "
        "scripts need one to be negotiated to test it)",
    "test-*renegotiation*.py, test-interleaved-*.py":
        "renegotiation, refused by rustls (no_renegotiation alert)",
    "test-certificate-*.py, test-tls13-certificate-*.py, "
    "test-tls13-post-handshake-auth.py, test-*-in-certificate-verify.py":
        "client certificates, not requested",
    "test-tls13-psk_*.py": "external PSKs, not configured",
    "test-tls13-eddsa.py, test-tls13-ecdhe-brainpool-curves.py, "
    "test-dsa-sig-flexibility.py, test-tls13-minerva.py":
        "Ed25519/Ed448, brainpool or DSA certificates, or a timing side "
        "channel measurement (needs a pinned CPU and hours)",
    "test-ocsp-stapling.py, test-heartbeat.py, test-tls13-certificate-compression.py":
        "OCSP stapling, heartbeat and certificate compression are not "
        "configured (test-no-heartbeat.py runs instead of test-heartbeat.py)",
    "test-fuzzed-plaintext.py":
        "replaces a record's plaintext under CBC's MAC; with an AEAD suite "
        "tlslite seals the replaced plaintext properly, so the record is "
        "authentic and there is nothing to refuse (test-fuzzed-ciphertext.py "
        "fuzzes AEAD records instead)",
    "test-aes-gcm-nonces.py":
        "collects the explicit nonces of many server records on one "
        "connection, from a server that answers each of several HTTP/1.0 "
        "requests there; gisgate closes an HTTP/1.0 connection after its "
        "response, so too few nonces are seen to judge",
    "test-fuzzed-finished.py":
        "hard-codes static RSA key exchange (TLS 1.3's Finished is fuzzed by "
        "test-tls13-finished.py)",
    "test-chacha20.py, test-x25519.py, test-invalid-server-name-extension.py, test-invalid-cipher-suites.py, "
    "test-invalid-compression-methods.py, test-empty-extensions.py, "
    "test-extensions.py, test-invalid-version.py, test-truncating-of-*.py, "
    "test-message-duplication.py, test-point-extension.py, "
    "test-unsupported-curve-fallback.py, test-sslv2hello-protocol.py, "
    "test-sig-algs.py":
        "send TLS 1.2 ClientHellos without signature_algorithms (RFC 5246 "
        "§7.4.1.4.1: the server must then sign with SHA-1, which rustls "
        "never does) or with CBC and static RSA suites only, and take no "
        "option to change that: their sanity handshake fails, so the rest "
        "tests nothing",
}

for _name, _value in list(globals().items()):
    if isinstance(_value, XFail):
        _value.tag = _name
