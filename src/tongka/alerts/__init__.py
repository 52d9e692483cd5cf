"""Alerts: what tongka tells a subscriber of their lines and account (data running low or expiring,
overage, renewals, payments, auto-renew, security), each once, by the channels they chose."""
