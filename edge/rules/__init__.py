"""Business rules for EU DCCs: the CertLogic engine, rules as the EU gateway ships them,
their selection and evaluation, and the rule sets the kiosk applies."""
