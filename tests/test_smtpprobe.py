"""kijun.smtpprobe against a small SMTP server on loopback that behaves like a closed relay."""

from __future__ import annotations

import json
import socketserver
import subprocess
import threading
from collections.abc import Iterator

import pytest

from kijun import smtpprobe

LIMIT = 1000
OWN = "relay.example"


class _ClosedRelay(socketserver.StreamRequestHandler):
    """Greets, wants HELO first, refuses VRFY, relays for nobody, accepts mail for its own
    domain, and refuses messages over LIMIT bytes (announced or sent)."""

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 relay.example ESMTP")
        helo = False
        while raw := self.rfile.readline():
            line = raw.decode().rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                helo = True
                self.reply(f"250-relay.example\r\n250 SIZE {LIMIT}")
            elif verb == "MAIL" and not helo:
                self.reply("503 5.5.1 Error: send HELO/EHLO first")
            elif verb == "MAIL":
                size = int(line.rsplit("SIZE=", 1)[1]) if "SIZE=" in line else 0
                self.reply(
                    "552 5.3.4 Message size exceeds fixed limit" if size > LIMIT else "250 Ok"
                )
            elif verb == "RCPT":
                ok = line.endswith(f"@{OWN}>")
                self.reply("250 Ok" if ok else "554 5.7.1 Relay access denied")
            elif verb == "VRFY":
                self.reply("502 5.5.1 VRFY command is disabled")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                size = 0
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    size += len(data)
                self.reply("552 5.3.4 Error: message file too big" if size > LIMIT else "250 Ok")
            elif verb == "RSET":
                self.reply("250 Ok")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 5.5.2 Error: command not recognized")


@pytest.fixture
def relay() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ClosedRelay)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[0], server.server_address[1]
    server.shutdown()
    server.server_close()


def test_outside_conversation_records_every_answer(relay: tuple[str, int]) -> None:
    result = smtpprobe.probe("outside", *relay, helo="probe.example", domain=OWN)
    assert result["error"] is None
    assert result["greeting"] == [220, "relay.example ESMTP"]
    assert (result["mail_before_helo"], result["vrfy"]) == (503, 502)
    assert (result["relay"], result["local"]) == (554, 250)
    assert result["source"] == "127.0.0.1"
    text = smtpprobe.transcript_text(result)
    assert "C: RCPT TO:<kijun-relay-probe@relay-test.example>" in text
    assert "S: 554 5.7.1 Relay access denied" in text
    assert json.loads(text.splitlines()[0])["relay"] == 554


def test_oversized_message_is_announced_then_sent_only_after_a_refusal(
    relay: tuple[str, int],
) -> None:
    result = smtpprobe.probe("size", *relay, helo="p.example", domain=OWN, size_limit=LIMIT)
    assert (result["advertised"], result["announced"], result["data"]) == ("1000", 552, 552)
    assert result["sent_bytes"] > LIMIT
    assert any(line.startswith("C: <") for line in result["transcript"])


def test_a_relay_that_accepts_the_announced_size_never_gets_the_content(
    relay: tuple[str, int],
) -> None:
    result = smtpprobe.probe("size", *relay, helo="p.example", domain=OWN, size_limit=LIMIT // 2)
    assert result["announced"] == 250
    assert "data" not in result and "sent_bytes" not in result


def test_the_remote_command_runs_the_same_probe_with_python3(relay: tuple[str, int]) -> None:
    command = smtpprobe.remote_command("inside", *relay, helo="in.example", domain=OWN)
    proc = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL
    )
    result = json.loads(proc.stdout)
    assert (result["mode"], result["relay"], result["error"]) == ("inside", 554, None)


def test_a_silent_server_is_reported_not_raised() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts, never greets
        result = smtpprobe.probe(
            "outside", *listener.getsockname(), helo="p.example", domain=OWN, timeout=0.5
        )
    assert result["error"] and "greeting" not in result
    assert result["transcript"][-1].startswith("-- broken off:")
