"""The fleet PKI: certificates and the index (``ca``), the revocation list (``crl``),
the broker's access control (``acl``), and their command line (``cli``)."""
