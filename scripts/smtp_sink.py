#!/usr/bin/env python3
"""smtp_sink.py — a real SMTP server (aiosmtpd) for tests: stores every message it accepts.

Plain SMTP on 127.0.0.1 (no TLS, no AUTH). Each accepted message is written to DIR as
    NNNNNN.eml   the DATA bytes exactly as received (CRLF line ends, dot-unstuffed,
                 without the terminating ".\\r\\n"), nothing added
    NNNNNN.json  {"mail_from": "...", "rcpt_tos": ["..."], "size": N, "received_at": T}
NNNNNN is a counter (000001, 000002, ... continuing after files already in DIR), so names
sort in the order of receipt. Both files are written to a temp name (".NNNNNN.*.tmp")
and renamed; the .json is renamed first, so when an .eml is visible its .json is too.
DIR/.sink-stats (JSON, no extension) counts the DATA attempts:
    {"data_commands": n, "accepted": a, "temp_failed": t, "rejected": r}

Options:
    --port P         port to listen on; 0 picks a free one (default 0)
    --dir DIR        where to write messages (created if missing)
    --host H         address (default 127.0.0.1)
    --fail-first N   answer the first N DATA commands "451 4.3.0 try again later"
    --reject-all     answer every DATA command "550 5.7.1 message rejected"
    --verbose        one line per DATA command on stderr

When it listens, it prints exactly one line to stdout and flushes it:
    LISTENING 127.0.0.1:<port>
and nothing else goes to stdout. It exits 0 on SIGTERM or SIGINT.
Run it with the venv python from scripts/ensure-tools (it needs aiosmtpd).
"""

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time

from aiosmtpd.smtp import SMTP


class SinkHandler:
    def __init__(self, directory, fail_first, reject_all, verbose):
        self.dir = directory
        self.fail_first = fail_first
        self.reject_all = reject_all
        self.verbose = verbose
        self.stats = {"data_commands": 0, "accepted": 0, "temp_failed": 0, "rejected": 0}
        highest = 0
        for name in os.listdir(directory):
            m = re.fullmatch(r"(\d+)\.(eml|json)", name)
            if m:
                highest = max(highest, int(m.group(1)))
        self.counter = highest
        self._write_stats()

    def _atomic_write(self, final_name, data):
        tmp = os.path.join(self.dir, "." + final_name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(self.dir, final_name))

    def _write_stats(self):
        self._atomic_write(".sink-stats", json.dumps(self.stats).encode())

    def _log(self, msg):
        if self.verbose:
            print("smtp_sink: " + msg, file=sys.stderr, flush=True)

    async def handle_DATA(self, server, session, envelope):
        self.stats["data_commands"] += 1
        n = self.stats["data_commands"]
        rcpts = list(envelope.rcpt_tos)
        if self.reject_all:
            self.stats["rejected"] += 1
            self._write_stats()
            self._log(f"DATA #{n} from {envelope.mail_from} to {rcpts}: 550")
            return "550 5.7.1 message rejected"
        if n <= self.fail_first:
            self.stats["temp_failed"] += 1
            self._write_stats()
            self._log(f"DATA #{n} from {envelope.mail_from} to {rcpts}: 451")
            return "451 4.3.0 try again later"

        data = envelope.original_content or b""
        self.counter += 1
        while os.path.exists(os.path.join(self.dir, f"{self.counter:06d}.eml")):
            self.counter += 1
        base = f"{self.counter:06d}"
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": rcpts,
            "size": len(data),
            "received_at": time.time(),
        }
        self._atomic_write(base + ".json", json.dumps(meta).encode())
        self._atomic_write(base + ".eml", data)
        self.stats["accepted"] += 1
        self._write_stats()
        self._log(f"DATA #{n} from {envelope.mail_from} to {rcpts}: 250 -> {base}.eml")
        return "250 2.0.0 OK"


async def main():
    ap = argparse.ArgumentParser(description="SMTP sink for tests (writes .eml files)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--fail-first", type=int, default=0, metavar="N")
    ap.add_argument("--reject-all", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    handler = SinkHandler(args.dir, args.fail_first, args.reject_all, args.verbose)

    loop = asyncio.get_running_loop()

    def factory():
        # A fixed hostname avoids a reverse-DNS lookup (getfqdn) per connection.
        return SMTP(
            handler,
            hostname="keypulse-smtp-sink",
            ident="keypulse smtp_sink",
            decode_data=False,
            enable_SMTPUTF8=True,
        )

    server = await loop.create_server(factory, host=args.host, port=args.port)
    port = server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    print(f"LISTENING {args.host}:{port}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
