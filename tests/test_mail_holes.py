"""The worker renders each kind of email once and puts each message's link and code in its
holes (`mail.EmailsWithHoles`), with the very words `render_email` gives."""

from __future__ import annotations

import secrets

from jinja2 import ChoiceLoader, DictLoader

from petitions.mail import EmailsWithHoles, render_email


def _confirmation(app, link: str | None = None, code: str | None = None) -> dict[str, object]:
    link = link or secrets.token_urlsafe(24)
    code = code or f"{secrets.randbelow(10**8):08d}"
    return {"url": f"{app.config['PUBLIC_URL']}/c/{link}", "code": code, "max_age_days": 7}


def test_every_message_gets_what_a_render_of_its_own_gives(app):
    emails = EmailsWithHoles(app)
    with app.app_context():
        contexts = [_confirmation(app) for _ in range(5)]
        contexts.append(_confirmation(app, "a.b-c_d~e", "00000001"))
        for context in contexts:
            assert emails.render("confirm_signature", context) == render_email(
                app, "confirm_signature", context
            )
        # Other shared values are another rendering, not a wrong one.
        longer = {**contexts[0], "max_age_days": 30}
        assert emails.render("confirm_signature", longer) == render_email(
            app, "confirm_signature", longer
        )
        assert "30 days" in emails.render("confirm_signature", longer).text
        # A kind without holes is kept whole.
        assert emails.render("already_signed", {}) == render_email(app, "already_signed", {})
        assert emails.render("already_signed", {}) == render_email(app, "already_signed", {})
    assert len(emails._kept) == 3 and None not in emails._kept.values()


def test_values_html_would_escape_are_rendered_each_time(app):
    emails = EmailsWithHoles(app)
    with app.app_context():
        context = {**_confirmation(app), "url": "https://x.example/c/a&b<c>"}
        words = emails.render("confirm_signature", context)
        assert words == render_email(app, "confirm_signature", context)
        assert "a&amp;b&lt;c&gt;" in (words.html or "")
    assert not emails._kept


def test_a_template_that_changes_a_value_is_never_cut(app):
    app.jinja_env.loader = ChoiceLoader(
        [
            DictLoader(
                {
                    "mail/shout.txt": "Subject: Code {{ code|upper }}\n\n{{ code|upper }}\n",
                    "mail/shout.html": "<p>{{ code[:4] }}</p>",
                }
            ),
            app.jinja_env.loader,
        ]
    )
    emails = EmailsWithHoles(app)
    with app.app_context():
        for code in ("abc", "def", "ghi"):
            words = emails.render("shout", {"code": code})
            assert words == render_email(app, "shout", {"code": code})
            assert words.subject == f"Code {code.upper()}"
    assert list(emails._kept.values()) == [None]


def test_templates_that_reload_from_disk_are_rendered_each_time(app):
    app.jinja_env.auto_reload = True
    emails = EmailsWithHoles(app)
    with app.app_context():
        context = _confirmation(app)
        assert emails.render("confirm_signature", context) == render_email(
            app, "confirm_signature", context
        )
    assert not emails._kept
