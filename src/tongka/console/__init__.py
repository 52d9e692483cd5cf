"""The operator's console: pages for operator admins over every domain (catalog, offers,
inventory, stores and staff, refunds, networks, exchange rates, messages, the audit log,
reports). An entry point like the route modules: it calls flows and domain services."""
