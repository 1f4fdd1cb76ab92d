"""The yardstick: a Flask hello-world served by the same gunicorn settings as the app.

Every rate in the results is also given as a ratio to this one, so the numbers say how much
of what Flask and gunicorn can do on this machine the app keeps, whatever the machine.
"""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    """The cheapest response Flask can make."""
    return "Hello, world!"
