"""The WSGI entry point that gunicorn and `flask --app wsgi` load."""

from petitions import create_app

app = create_app()
