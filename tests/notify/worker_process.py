"""A delivery worker in a process of its own, which test_worker kills in the middle of a send.

Usage: python -m tests.notify.worker_process DATABASE_URL SMTP_URL
"""

from __future__ import annotations

import sys
from datetime import timedelta

from tongka.db import make_engine, make_sessionmaker
from tongka.notify import worker
from tongka.notify.email import SmtpSender, SmtpServer

MAIL_FROM = "tongka <no-reply@mail.tongka.test>"


def main(database_url: str, smtp_url: str) -> None:
    sessions = make_sessionmaker(make_engine(database_url))
    sender = SmtpSender(SmtpServer.parse(smtp_url), MAIL_FROM, timeout=300)
    policy = worker.Policy(lease=timedelta(seconds=120), send_margin=timedelta(seconds=1))
    worker.deliver_due(sessions, {"email": sender}, worker_id="doomed", policy=policy)


if __name__ == "__main__":
    main(*sys.argv[1:])
