"""kijun (基準): configuration baseline and drift auditor for public bodies' security policies."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kijun")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
