"""Scope Web's gate command for CI runners (``scopeweb-gate``), and the two formats it shares
with the server: the gate result's outputs (JSON, JUnit XML, Markdown) and the signed
attestation. Standard library and ``cryptography`` only: no Django, no torch."""
