"""The demo: district databases, the simulated clock and school days, and the demo run."""
