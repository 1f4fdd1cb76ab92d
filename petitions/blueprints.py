"""Attach every feature's blueprints, and the Jinja filters the templates share."""

from __future__ import annotations

from flask import Flask

from petitions.rendering import render_markdown


def register_blueprints(app: Flask) -> None:
    """Attach every blueprint, and the dev mailbox only in development."""
    from petitions import health
    from petitions.accounts import views as accounts
    from petitions.committee import views as committee
    from petitions.delivery import recipient
    from petitions.delivery import views as delivery
    from petitions.letters import views as letters
    from petitions.moderation import reports
    from petitions.moderation import views as moderation
    from petitions.public import api, embed
    from petitions.public import views as public
    from petitions.signing import proof_views
    from petitions.signing import views as signing
    from petitions.updates import service as update_links
    from petitions.updates import views as updates

    for module in (
        health,
        accounts,
        letters,
        committee,
        delivery,
        recipient,
        public,
        signing,
        api,
        embed,
        moderation,
        reports,
    ):
        app.register_blueprint(module.bp)
    app.register_blueprint(proof_views.bp)
    app.register_blueprint(updates.bp)
    # RFC 8058's one-click POST carries no CSRF token; the view checks one on every other POST.
    app.extensions["csrf"].exempt(updates.unsubscribe)
    if app.config.get("DEV_MAILBOX"):
        from petitions import devmail

        app.register_blueprint(devmail.bp)
    app.jinja_env.filters["markdown"] = render_markdown
    app.jinja_env.filters["thousands"] = lambda number: f"{int(number or 0):,}"
    app.jinja_env.globals["site_name"] = "Undersigned"
    app.jinja_env.globals["update_confirm_url"] = update_links.confirm_url

    @app.context_processor
    def inject_settings() -> dict[str, object]:
        return {"dev_mailbox": bool(app.config.get("DEV_MAILBOX"))}
