"""Blueprints: thin views that parse a form, call a service, commit, and answer."""

from __future__ import annotations

from flask import Flask

from petitions.rendering import render_markdown


def register_blueprints(app: Flask) -> None:
    """Attach every blueprint, and the dev mailbox only in development."""
    from petitions.views import api, auth, embed, health, organizer, public, signing

    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(organizer.bp)
    app.register_blueprint(public.bp)
    app.register_blueprint(signing.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(embed.bp)
    from petitions.views import admin, reports

    app.register_blueprint(admin.bp)
    app.register_blueprint(reports.bp)
    if app.config.get("DEV_MAILBOX"):
        from petitions.views import devmail

        app.register_blueprint(devmail.bp)
    app.jinja_env.filters["markdown"] = render_markdown
    app.jinja_env.filters["thousands"] = lambda number: f"{int(number or 0):,}"
    app.jinja_env.globals["site_name"] = "Undersigned"

    @app.context_processor
    def inject_settings() -> dict[str, object]:
        return {"dev_mailbox": bool(app.config.get("DEV_MAILBOX"))}
