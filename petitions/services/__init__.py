"""The product's rules. Services add and flush; the caller commits."""
