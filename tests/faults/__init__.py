"""Fault injection: loads, builds and the server killed at random moments."""
