"""Trust: the operator's official channels, the public check "Is this official?", and scam reports."""
