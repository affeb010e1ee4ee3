"""The fleet PKI: certificates and the CRL (``ca``), the broker's access control
(``acl``), and their command line (``cli``)."""
