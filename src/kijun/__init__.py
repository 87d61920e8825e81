"""kijun (基準): configuration baseline and drift auditor for public bodies' security policies."""

# The single place of the version (pyproject.toml reads it): no package metadata lookup at
# import time, which cost a noticeable part of a one-host audit.
__version__ = "0.1.0"
