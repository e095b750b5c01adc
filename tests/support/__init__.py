"""Test support: real databases, a real Redis, real servers, a real browser."""
