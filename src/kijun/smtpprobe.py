"""Live SMTP conversations with a mail relay, recorded line by line (the mail audits' probes).

A probe is a real SMTP client (Python's :mod:`smtplib`) talking to the relay, and its transcript
is evidence: every command sent and every reply received, in order. The audits run it from the
control node (a client outside the relay's ``mynetworks``) and, through ``python3`` on a host
inside the relay's networks, from the inside. This file uses the standard library only, so that
the same code runs on any host with Python 3: :func:`remote_command` sends its own source.

Nothing is ever delivered: a relay test stops after ``RCPT TO`` (``RSET``, ``QUIT``), and the
oversized message is sent only when the relay has already refused the same size announced with
``MAIL FROM ... SIZE=`` (RFC 1870), so a relay that would accept it never receives its content.
Addresses use the reserved ``.example`` domain (RFC 2606), which resolves nowhere.

Run as a script: ``python3 smtpprobe.py MODE SERVER PORT [options]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import json
import smtplib
import sys
import time
from pathlib import Path
from typing import Any

OUTSIDE_SENDER = "kijun-audit@probe.example"
OUTSIDE_RECIPIENT = "kijun-relay-probe@relay-test.example"
MODES = ("outside", "inside", "size")
_LONG = 200  # client data longer than this is summarised in the transcript


class RecordingSMTP(smtplib.SMTP):
    """smtplib's client, writing every line it sends and receives into ``transcript``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.transcript: list[str] = []
        super().__init__(*args, **kwargs)

    def send(self, s: str | bytes) -> None:  # type: ignore[override]
        data = s.encode("ascii") if isinstance(s, str) else s
        if len(data) > _LONG:
            self.transcript.append(f"C: <{len(data)} bytes of message data>")
        else:
            for line in data.decode("ascii", "replace").splitlines():
                self.transcript.append(f"C: {line}")
        super().send(s)

    def getreply(self) -> tuple[int, bytes]:
        code, message = super().getreply()
        lines = message.decode("utf-8", "replace").splitlines() or [""]
        for i, line in enumerate(lines):
            sep = "-" if i < len(lines) - 1 else " "
            self.transcript.append(f"S: {code}{sep}{line}".rstrip())
        return code, message


def _connect(client: RecordingSMTP, server: str, port: int) -> dict[str, Any]:
    client.transcript.append(f"-- connecting to {server}:{port}")
    code, message = client.connect(server, port)
    assert client.sock is not None
    source = client.sock.getsockname()[0]
    client.transcript.append(f"-- connected from {source}")
    return {"source": source, "greeting": [code, message.decode("utf-8", "replace")]}


def _code(reply: tuple[int, bytes]) -> int:
    return int(reply[0])


def outside(client: RecordingSMTP, result: dict[str, Any], args: argparse.Namespace) -> None:
    """From a client outside mynetworks: MAIL before HELO, VRFY, relaying, local delivery."""
    result["mail_before_helo"] = _code(client.docmd("MAIL", f"FROM:<{OUTSIDE_SENDER}>"))
    client.rset()
    result["ehlo"] = _code(client.ehlo(args.helo))
    result["vrfy"] = _code(client.docmd("VRFY", "postmaster"))
    result["mail"] = _code(client.docmd("MAIL", f"FROM:<{OUTSIDE_SENDER}>"))
    result["relay"] = _code(client.docmd("RCPT", f"TO:<{OUTSIDE_RECIPIENT}>"))
    client.rset()
    client.docmd("MAIL", f"FROM:<{OUTSIDE_SENDER}>")
    result["local"] = _code(client.docmd("RCPT", f"TO:<postmaster@{args.domain}>"))
    client.rset()


def inside(client: RecordingSMTP, result: dict[str, Any], args: argparse.Namespace) -> None:
    """From a client inside mynetworks: relaying to an outside domain (stopped after RCPT)."""
    result["ehlo"] = _code(client.ehlo(args.helo))
    result["mail"] = _code(client.docmd("MAIL", f"FROM:<kijun-audit@{args.domain}>"))
    result["relay"] = _code(client.docmd("RCPT", f"TO:<{OUTSIDE_RECIPIENT}>"))
    client.rset()


def size(client: RecordingSMTP, result: dict[str, Any], args: argparse.Namespace) -> None:
    """A message one byte over ``args.size``: announced with SIZE=, then (only if that was
    refused) sent without announcement to the relay's postmaster, to see the limit enforced."""
    code, message = client.ehlo(args.helo)
    result["ehlo"] = code
    advertised = [
        line.split()[1]
        for line in message.decode("utf-8", "replace").splitlines()
        if line.upper().startswith("SIZE ") and len(line.split()) > 1
    ]
    result["advertised"] = advertised[0] if advertised else None
    over = args.size + 1
    sender = f"kijun-audit@{args.domain}"
    result["announced"] = _code(client.docmd("MAIL", f"FROM:<{sender}> SIZE={over}"))
    client.rset()
    if not 500 <= result["announced"] < 600:
        return  # accepted (or not answered): never send content the relay might deliver
    client.docmd("MAIL", f"FROM:<{sender}>")
    rcpt = _code(client.docmd("RCPT", f"TO:<postmaster@{args.domain}>"))
    result["recipient"] = rcpt
    if rcpt != 250:
        client.rset()
        return
    header = (
        f"From: <{sender}>\r\nTo: <postmaster@{args.domain}>\r\n"
        "Subject: kijun audit: message over the size limit (must be refused)\r\n\r\n"
    ).encode()
    line = b"x" * 998 + b"\r\n"
    body = line * (over // len(line) + 1)
    code, _ = client.data(header + body)
    result["sent_bytes"] = len(header) + len(body)
    result["data"] = int(code)


_STEPS = {"outside": outside, "inside": inside, "size": size}


def probe(
    mode: str, server: str, port: int = 25, *, helo: str, domain: str, size_limit: int = 0,
    timeout: float = 10.0,
) -> dict[str, Any]:  # fmt: skip
    """Run one conversation; the result holds each reply code and the whole ``transcript``.

    ``error`` is set when the conversation broke off (no greeting, connection refused or cut,
    timeout): the codes recorded up to that point stay in the result.
    """
    args = argparse.Namespace(helo=helo, domain=domain, size=size_limit)
    result: dict[str, Any] = {"mode": mode, "server": f"{server}:{port}", "error": None}
    started = time.monotonic()
    client = RecordingSMTP(timeout=timeout)
    try:
        info = _connect(client, server, port)
        result.update(info)
        if info["greeting"][0] != 220:
            raise smtplib.SMTPConnectError(info["greeting"][0], b"no 220 greeting")
        _STEPS[mode](client, result, args)
        client.quit()
    except (OSError, smtplib.SMTPException) as exc:  # OSError includes timeouts
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if result["error"]:
            client.transcript.append(f"-- broken off: {result['error']}")
        client.close()
        result["transcript"] = client.transcript
        result["seconds"] = round(time.monotonic() - started, 3)
    return result


def transcript_text(result: dict[str, Any]) -> str:
    """The transcript as an auditor reads it, with the outcome codes above it."""
    head = {k: v for k, v in result.items() if k != "transcript"}
    return json.dumps(head, sort_keys=True) + "\n" + "\n".join(result["transcript"]) + "\n"


def remote_command(
    mode: str, server: str, port: int = 25, *, helo: str, domain: str, size_limit: int = 0,
    timeout: float = 10.0,
) -> str:  # fmt: skip
    """A shell command that runs this probe with ``python3`` on another host."""
    source = base64.b64encode(Path(__file__).read_bytes()).decode()
    argv = [mode, server, str(port), "--helo", helo, "--domain", domain,
            "--size", str(size_limit), "--timeout", str(timeout)]  # fmt: skip
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)
    return f'python3 -c "$(echo {source} | base64 -d)" {quoted}'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("server")
    parser.add_argument("port", type=int)
    parser.add_argument("--helo", required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0)
    a = parser.parse_args(argv)
    result = probe(a.mode, a.server, a.port, helo=a.helo, domain=a.domain, size_limit=a.size,
                   timeout=a.timeout)  # fmt: skip
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
