"""The mail commands: `worker`, `mail-status` and `mail-retry`."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import click
from flask import Flask, current_app

from petitions.db import new_session, utcnow
from petitions.mail import outbox, worker


def _chores() -> list[worker.Chore]:
    """What the worker does besides mail: purge expired pending signatures, record the count
    history, note passed response deadlines on letters' timelines, and on SQLite fold the
    write-ahead log (old copies of addresses) into the file."""
    from petitions.db import checkpoint_sqlite, get_engine
    from petitions.delivery.timeline import record_passed_deadlines
    from petitions.signing.service import purge_expired
    from petitions.signing.subscribers import move_new_subscribers
    from petitions.tallies.history import record
    from petitions.updates.sending import purge_subscribers
    from petitions.updates.sending import work as send_updates

    return [
        worker.Chore("purge", 600, purge_expired),
        # Before the mail goes: it queues the "signed" email to each new subscriber.
        worker.Chore("subscribers", 60, move_new_subscribers),
        worker.Chore("snapshot", 60, record),
        # "No response N days after delivery" on the timeline once a requested date has passed.
        worker.Chore("deadlines", 600, record_passed_deadlines),
        # Updates: open each subscriber's address and queue its email, a batch a pass; count
        # deliveries; drop addresses refused for good. Then retention of subscribers.
        worker.Chore("updates", 10, send_updates),
        worker.Chore("update-retention", 3600, purge_subscribers),
        # On the plain engine: the session's own begins with BEGIN IMMEDIATE, inside which
        # SQLite refuses a checkpoint ("database table is locked").
        worker.Chore("checkpoint", 60, lambda _s, _now: checkpoint_sqlite(get_engine(current_app))),
    ]


def age(seconds: float) -> str:
    """A duration as an operator reads it: "45 s", "12 min", "3 h 20 min", "2 days 4 h"."""
    seconds = max(0, int(seconds))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds} s"
    if hours < 2:
        return f"{minutes} min"
    if days < 2:
        return f"{hours} h {minutes % 60} min"
    return f"{days} days {hours % 24} h"


def _iso_time(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 time; one without a zone is taken as UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO time such as 2026-12-04T18:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def register_mail_commands(app: Flask) -> None:
    """Attach the mail commands to `flask`."""

    @app.cli.command("worker")
    @click.option("--drain", is_flag=True, help="Do the chores once, send what is due, exit.")
    @click.option("--interval", default=0.5, show_default=True, help="Seconds between polls.")
    def worker_command(drain: bool, interval: float) -> None:
        """Deliver queued email over SMTP; purge expired signatures and record history."""
        if drain:
            report = worker.drain(current_app, chores=_chores())
            click.echo(f"{report.sent} sent, {report.retried} to retry, {report.failed} failed.")
            return
        stop = threading.Event()
        worker.stop_on_signals(stop)
        click.echo("Mail worker running; Ctrl+C or SIGTERM stops it.")
        worker.run(current_app, stop, interval=interval, chores=_chores())
        click.echo("Mail worker stopped.")

    @app.cli.command("mail-status")
    def mail_status() -> None:
        """Show the outbox: messages queued, sent and failed, the oldest waiting, and why
        the failures failed (domains only)."""
        with new_session(current_app) as session:
            summary = outbox.summary(session)
        click.echo(f"{summary.queued} queued, {summary.sent} sent, {summary.failed} failed.")
        if summary.oldest_queued_at is None:
            click.echo("Nothing waits in the queue.")
        else:
            waited = age((utcnow() - summary.oldest_queued_at).total_seconds())
            queued = summary.oldest_queued_at.strftime("%Y-%m-%d %H:%M:%S UTC")
            click.echo(f"Oldest queued message: {waited} old (queued {queued}).")
        for line in summary.failures:
            click.echo(f"failed: {line}")

    @app.cli.command("mail-retry")
    @click.option(
        "--since",
        metavar="ISO-TIME",
        callback=_iso_time,
        help="Only messages that failed at or after this time (UTC unless a zone is given).",
    )
    def mail_retry(since: datetime | None) -> None:
        """Put failed messages back in the queue, to be sent at once with fresh retries."""
        with new_session(current_app) as session:
            count = outbox.requeue_failed(session, utcnow(), since)
            session.commit()
        noun = "message" if count == 1 else "messages"
        click.echo(f"Put {count} failed {noun} back in the queue.")
