"""The domain: services take ids and plain values, own the transaction, know nothing of HTTP."""
