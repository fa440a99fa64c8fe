#!/usr/bin/python3
"""Drives dkimpy (Debian's python3-dkim) for dkimd's interoperability tests.

  dkimpy_tool.py verify DNSFILE FILE...
      For each FILE prints "FILE<TAB>pass" or "FILE<TAB>fail<TAB>reason".
      DNSFILE has lines NAME<TAB>TXT-VALUE; no DNS server is asked.
  dkimpy_tool.py verify-live SERVER PORT FILE...
      As verify, asking the DNS server at SERVER:PORT (dnspython, which
      follows the CNAMEs in its answers) instead of a file.
  dkimpy_tool.py sign KEYFILE DOMAIN SELECTOR ALGORITHM CANON IN OUT
      Signs IN with dkimpy and writes the signed message to OUT.
      ALGORITHM is rsa-sha256 or ed25519-sha256, CANON e.g. relaxed/relaxed.
"""
import sys

import dkim


def load_dns(path):
    records = {}
    with open(path, encoding="ascii") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            name, value = line.split("\t", 1)
            records[name.rstrip(".").lower()] = value.encode("ascii")
    return records


def verify(dns_path, files):
    records = load_dns(dns_path)

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        return records.get(name.rstrip(".").lower(), b"")

    check(dnsfunc, files)


def verify_live(server, port, files):
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server]
    resolver.port = int(port)

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        try:
            answer = resolver.resolve(name, "TXT", lifetime=timeout)
        except Exception:
            return b""
        for rr in answer:
            return b"".join(rr.strings)
        return b""

    check(dnsfunc, files)


def check(dnsfunc, files):
    for path in files:
        with open(path, "rb") as f:
            msg = f.read()
        d = dkim.DKIM(msg)
        try:
            ok = d.verify(dnsfunc=dnsfunc)
            reason = ""
        except dkim.DKIMException as e:
            ok, reason = False, str(e)
        if ok:
            print(f"{path}\tpass")
        else:
            reason = reason or "signature did not verify"
            print(f"{path}\tfail\t{reason}")


def sign(key_path, domain, selector, algorithm, canon, in_path, out_path):
    with open(key_path, "rb") as f:
        key = f.read()
    with open(in_path, "rb") as f:
        msg = f.read()
    h, b = canon.split("/")
    sig = dkim.sign(
        msg,
        selector.encode(),
        domain.encode(),
        key,
        canonicalize=(h.encode(), b.encode()),
        signature_algorithm=algorithm.encode(),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    with open(out_path, "wb") as f:
        f.write(sig + msg)


def main(argv):
    if len(argv) >= 3 and argv[1] == "verify":
        verify(argv[2], argv[3:])
    elif len(argv) >= 5 and argv[1] == "verify-live":
        verify_live(argv[2], argv[3], argv[4:])
    elif len(argv) == 9 and argv[1] == "sign":
        sign(*argv[2:])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
