"""Scope Web's tracer for a Gemma 3 serving runtime: sampling, capture and shipping.

Imports without Django; needs torch only for capture (``scopeweb_tracer.capture``)."""
