"""The repository itself: documentation links, Makefile targets, the package layout."""
