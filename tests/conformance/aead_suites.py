"""Runs a tlsfuzzer script with its hard-coded ECDHE AES-CBC suites
taken as the AES-GCM suites of the same key exchange:

    python3 aead_suites.py SCRIPT [options]

Many TLS 1.2 scripts test something other than the bulk cipher (extended
master secret, downgrade protection, message order, ClientHello sizes)
but name TLS_ECDHE_*_WITH_AES_128_CBC_SHA in their ClientHello, which
gisgate does not offer (AEAD suites only), so their sanity handshake
fails and nothing is tested. tlslite reads a suite's properties from its
number, so the script then negotiates, keys and checks AES-GCM records.
Scripts whose subject is CBC itself (padding, MAC, Lucky13) are not run
this way (tls_plan.py).
"""

import runpy
import sys

from tlslite.constants import CipherSuite

SUBSTITUTES = {
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
}

for cbc, gcm in SUBSTITUTES.items():
    setattr(CipherSuite, cbc, getattr(CipherSuite, gcm))

script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
