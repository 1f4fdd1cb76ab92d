"""Undersigned: open letters from tech workers, with signatures verified by email."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask
from flask_login import LoginManager
from flask_wtf import CSRFProtect

from config import Config, config_from_env
from petitions import db
from petitions.errors import register_error_handlers
from petitions.security import API_LIMIT, init_security, limit_blueprint

ROOT = Path(__file__).resolve().parent.parent

csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to see that page."
login_manager.session_protection = "strong"


def create_app(config: Config | None = None) -> Flask:
    """Build the application: configuration, database, extensions, blueprints, errors, CLI."""
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(Path(getattr(config, "INSTANCE_PATH", "") or ROOT / "instance")),
    )
    app.config.from_object(config or config_from_env())
    # Cookies travel only over https once the site is served over https.
    secure = app.config["PUBLIC_URL"].startswith("https://")
    app.config["SESSION_COOKIE_SECURE"] = app.config["REMEMBER_COOKIE_SECURE"] = secure
    if not all(app.config.get(key) for key in ("SECRET_KEY", "ADDRESS_HASH_KEY", "UPDATES_KEY")):
        raise RuntimeError(
            "SECRET_KEY, ADDRESS_HASH_KEY and UPDATES_KEY must be set in production"
            " (see README, Configuration)."
        )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    db.init_app(app)
    csrf.init_app(app)
    login_manager.init_app(app)
    init_security(app)

    from petitions.blueprints import register_blueprints

    register_blueprints(app)
    limit_blueprint(app, "api", API_LIMIT)
    register_error_handlers(app)

    from petitions.cli import register_commands

    register_commands(app)
    return app
