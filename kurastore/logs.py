"""Logging setup: one structured line per event on stderr (key=value pairs)."""

from __future__ import annotations

import logging
import sys

from aiohttp.http_exceptions import HttpProcessingError


class MalformedRequestFilter(logging.Filter):
    """aiohttp answers a request it cannot parse (bad request line, header or length)
    with a 400 and logs it as an ERROR with a traceback. That is the client's fault,
    not ours: one INFO line with the reason instead, so real errors stand out."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
            what = record.getMessage()  # "Error handling request from <peer>"
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "malformed request refused (%d): %s; %s"
            record.args = (exc.code or 400, " ".join(str(exc.message).split()), what)
            record.exc_info, record.exc_text = None, None
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log duplicates ours.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())
