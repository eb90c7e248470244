"""Tests an outside attacker wrote against the issue-9 change, kept as regression
tests: merge and revert past the model (xattrs, hard links, criss-cross), crashes
mid-merge, deep trees, links, hostile API input."""
