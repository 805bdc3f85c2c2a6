"""CI gates: gate definitions, gate runs, their sign-off and attestations."""
