"""Staff: store agents, store managers and operator admins; their log-ins (password and TOTP),
their sessions, and the audit log of everything they do."""
