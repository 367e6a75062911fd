"""The staff console at /admin: accounts and sessions, documents, what members ask, the audit log."""
