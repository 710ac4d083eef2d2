"""mloop's web console: server-rendered pages over the five service APIs.

It owns no state and consumes no topics. Every call it makes carries the
signed-in person's own token, so the services' role checks and four-eyes
rules apply to the console exactly as to the CLI.
"""

from mloop.console.app import ConsoleSettings, create_app

__all__ = ["ConsoleSettings", "create_app"]
